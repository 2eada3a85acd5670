"""Layers on HEALPix maps ``(B, C, N_cells)``, written once for every backend.

Weights are drawn with NumPy from ``seed`` so one seed gives the same network on every backend.
"""

import math

import numpy as np

from foscat_core import SphericalStencil
from foscat_core._validation import check_positive_int
from foscat_core.backends.dtypes import BACKEND_FLOAT_NAMES, FLOAT_NAMES, check_backend_dtype
from foscat_core.pyramid_ops import DOWN_MODES, DownPlan, UpPlan

from .module import NativeModule

NORMS = ("batch", "group", "instance", "none")


def check_channels(x, expected, name, layer):
    if len(x.shape) != 3:
        raise ValueError(f"{name} must have shape (B, C, N_cells), got shape {tuple(x.shape)}")
    if int(x.shape[1]) != expected:
        raise ValueError(f"{name} has {int(x.shape[1])} channels but {layer} expects {expected}")


def like_dtype(backend, v, y):
    """``v`` (a bias) in ``y``'s dtype: under ``torch.autocast`` a layer's output keeps the
    context's dtype, as torch's own layers do, instead of being promoted back by a float32 bias."""
    if backend.dtype_name(v) == backend.dtype_name(y):
        return v
    return backend.xp.astype(v, y.dtype)


class SphericalConv(NativeModule):
    """Oriented K x K spherical convolution with learned weights.

    Parameters
    ----------
    in_channels, out_channels : int
        With ``n_gauges = G > 1`` the output has ``G * out_channels`` channels (gauge-major).
    stencil : foscat_core.SphericalStencil
        Geometry (nside, cells, K, gauges); its backend and dtype are the layer's.
    bias : bool
    seed : int or numpy Generator, optional

    Weights: ``weight`` (C_in, C_out, K*K), or (G, C_in, C_out, K*K) with G gauges; ``bias``
    (G*C_out,). Input (B, C_in, N) → output (B, G*C_out, N).

    Examples
    --------
    >>> import numpy as np
    >>> import foscat_core as fc
    >>> from foscat_core.nn import SphericalConv
    >>> st = fc.SphericalStencil(nside=2, kernel_sz=3, backend="numpy")
    >>> conv = SphericalConv(1, 4, st, seed=0)
    >>> conv.weight.shape  # (C_in, C_out, K*K)
    (1, 4, 9)
    >>> conv(np.ones((2, 1, 48), "float32")).shape  # (B, C_in, N) -> (B, C_out, N)
    (2, 4, 48)

    With two gauges the output channels double (gauge-major):

    >>> st2 = fc.SphericalStencil(nside=2, kernel_sz=3, n_gauges=2, backend="numpy")
    >>> SphericalConv(1, 4, st2, seed=0)(np.ones((2, 1, 48), "float32")).shape
    (2, 8, 48)
    """

    def __init__(self, in_channels, out_channels, stencil, *, bias=True, seed=None):
        super().__init__(backend=stencil.backend)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.stencil = stencil
        rng = np.random.default_rng(seed)
        g, p = stencil.n_gauges, stencil.n_points
        shape = (in_channels, out_channels, p) if g == 1 else (g, in_channels, out_channels, p)
        std = math.sqrt(2.0 / (in_channels * p))  # He initialisation for ReLU networks
        self.add_parameter("weight", rng.normal(0.0, std, size=shape), stencil.dtype)
        self.use_bias = bool(bias)
        if self.use_bias:
            self.add_parameter("bias", np.zeros(g * out_channels), stencil.dtype)
        self._fc_prepare()

    def _fc_prepare(self):
        # The sparse operators and the backend's tables, built now rather than in the first
        # forward, where torch.compile / torch.export would have to trace host code.
        st = self.stencil
        self.backend.prepare_contract(st.operators, st.n_cells, self.in_channels, self.out_channels)

    def forward(self, x):
        check_channels(x, self.in_channels, "x", "this SphericalConv")
        return self._add_bias(self.stencil.conv(x, self._weight()))

    def forward_parts(self, parts):
        """``forward(concat(parts, axis=1))`` without making the concatenation: each part, shape
        (B, C_k, N) with sum(C_k) = C_in, meets its slice of the input channels' weights (the
        same result up to the summation order)."""
        widths = [int(part.shape[1]) for part in parts]
        if sum(widths) != self.in_channels:
            raise ValueError(f"parts have {widths} channels, {sum(widths)} in all, but this SphericalConv "
                             f"expects {self.in_channels}")
        weight, st, y, start = self._weight(), self.stencil, None, 0
        for part, width in zip(parts, widths):
            w = weight[start:start + width] if st.n_gauges == 1 else weight[:, start:start + width]
            y = st.conv(part, w) if y is None else y + st.conv(part, w)
            start += width
        return self._add_bias(y)

    def prepare_parts(self, widths):
        """Build now the tables :meth:`forward_parts` reads for parts of ``widths`` channels (as the
        constructor does for :meth:`forward`), so that compiled graphs trace no host code."""
        for width in widths:
            self.backend.prepare_contract(self.stencil.operators, self.stencil.n_cells, width, self.out_channels)

    def _weight(self):
        weight = self.fw.value(self.weight)  # the stencil takes arrays, not framework variables
        if self.backend.dtype_name(weight) != self.stencil.dtype:  # e.g. a parameter replaced by hand
            raise TypeError(f"this layer's weights are {self.backend.dtype_name(weight)} but its geometry is "
                            f"{self.stencil.dtype}: cast the whole module (e.g. net.to(dtype)), not its parameters")
        return weight

    def _add_bias(self, y):
        if self.use_bias:
            y = y + self.backend.xp.reshape(like_dtype(self.backend, self.bias, y), (1, -1, 1))
        return y


class PointwiseConv(NativeModule):
    """1 x 1 convolution (a per-cell linear map of channels): (B, C_in, N) → (B, C_out, N).

    ``y[b, :, n] = weight @ x[b, :, n] + bias``, the same map at every cell.

    Parameters
    ----------
    in_channels, out_channels : int
    backend : str or Backend
        Keyword-only.
    dtype : {"float32", "float64"}, or on torch also "bfloat16", "float16"
    bias : bool
    seed : int or numpy Generator, optional
        ``weight`` (C_out, C_in) and ``bias`` (C_out,) are drawn uniformly in
        ``±1/sqrt(C_in)``.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import PointwiseConv
    >>> mix = PointwiseConv(3, 5, backend="numpy", seed=0)
    >>> mix.weight.shape, mix.bias.shape
    ((5, 3), (5,))
    >>> mix(np.ones((2, 3, 48), "float32")).shape  # (B, C_in, N) -> (B, C_out, N)
    (2, 5, 48)
    """

    def __init__(self, in_channels, out_channels, *, backend, dtype="float32", bias=True, seed=None):
        super().__init__(backend=backend)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        dtype = check_backend_dtype(dtype, self.backend)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(in_channels)
        self.add_parameter("weight", rng.uniform(-bound, bound, size=(out_channels, in_channels)), dtype)
        self.use_bias = bool(bias)
        if self.use_bias:
            self.add_parameter("bias", rng.uniform(-bound, bound, size=(out_channels,)), dtype)

    def forward(self, x):
        check_channels(x, self.in_channels, "x", "this PointwiseConv")
        y = self.backend.xp.matmul(self.weight, x)  # (C_out, C_in) @ (B, C_in, N)
        if self.use_bias:
            y = y + self.backend.xp.reshape(like_dtype(self.backend, self.bias, y), (1, -1, 1))
        return y


class Norm(NativeModule):
    """Normalisation of (B, C, N) maps over cells: ``"batch"``, ``"group"``, ``"instance"`` or ``"none"``.

    ``"batch"`` normalises each channel over (B, N) in training and keeps running statistics
    (momentum 0.1, unbiased variance, as torch's BatchNorm1d) used in evaluation mode;
    ``"group"`` normalises groups of channels per sample, ``"instance"`` each channel per sample.
    Each has a learned per-channel scale and shift.

    Parameters
    ----------
    channels : int
        C, the channel axis of the input.
    kind : {"batch", "group", "instance", "none"}
        ``"none"`` is the identity and holds no variable.
    backend : str or Backend
        Keyword-only.
    dtype : {"float32", "float64"}, or on torch also "bfloat16", "float16"
        Of every variable, the running statistics included (as ``torch.nn.BatchNorm1d().bfloat16()``).
    groups : int, optional
        Groups for ``"group"``; must divide ``channels``; default ``gcd(channels, 8)``.
    eps : float
        Added to the variance.
    momentum : float
        Weight of the batch statistics in the running averages (``"batch"`` only).

    Variables: ``scale`` and ``shift`` (C,), plus the states ``running_mean`` and
    ``running_var`` (C,) for ``"batch"``. Shapes: x (B, C, N) → (B, C, N).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import Norm
    >>> x = np.random.default_rng(0).normal(2.0, 3.0, size=(3, 4, 12)).astype("float32")  # (B, C, N)
    >>> inorm = Norm(4, "instance", backend="numpy")
    >>> y = inorm(x)
    >>> y.shape, bool(np.allclose(y.mean(axis=2), 0, atol=1e-5))
    ((3, 4, 12), True)
    >>> bnorm = Norm(4, "batch", backend="numpy")
    >>> [name for name, _ in bnorm.named_variables()]
    ['scale', 'shift', 'running_mean', 'running_var']
    >>> _ = bnorm(x)                 # training mode: updates the running statistics
    >>> bnorm.running_mean.shape
    (4,)
    """

    def __init__(self, channels, kind="batch", *, backend, dtype="float32", groups=None, eps=1e-5, momentum=0.1):
        super().__init__(backend=backend)
        if kind not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
        self.kind, self.channels, self.eps, self.momentum = kind, check_positive_int(channels, "channels"), eps, momentum
        dtype = check_backend_dtype(dtype, self.backend)
        if kind == "none":
            return
        if kind == "group":
            groups = groups or math.gcd(channels, 8)
            if channels % groups:
                raise ValueError(f"groups must divide channels={channels}, got {groups}")
        self.groups = groups
        self.add_parameter("scale", np.ones(channels), dtype)
        self.add_parameter("shift", np.zeros(channels), dtype)
        if kind == "batch":
            self.add_state("running_mean", np.zeros(channels), dtype)
            self.add_state("running_var", np.ones(channels), dtype)

    def forward(self, x):
        if self.kind == "none":
            return x
        xp = self.backend.xp
        check_channels(x, self.channels, "x", f"this {self.kind} norm")
        if self.kind == "batch":
            fused = self.fw.fused_batch_norm(self, x)
            if fused is not None:  # the framework's own kernel: same numbers, far less memory
                return fused
            y = self._batch(x)
        else:
            shape = tuple(x.shape)
            groups = self.groups if self.kind == "group" else self.channels
            xg = xp.reshape(x, (-1, groups, (self.channels // groups) * int(shape[2])))
            mean = xp.mean(xg, axis=-1, keepdims=True)
            var = xp.mean((xg - mean) ** 2, axis=-1, keepdims=True)
            y = xp.reshape((xg - mean) / xp.sqrt(var + self.eps), (-1, self.channels, int(shape[2])))
        return y * xp.reshape(self.scale, (1, -1, 1)) + xp.reshape(self.shift, (1, -1, 1))

    def _batch(self, x):
        xp = self.backend.xp
        if not self.training or x.shape[0] == 0:  # an empty batch has no statistics: keep the running ones
            mean, var = self.running_mean, self.running_var
            return (x - xp.reshape(mean, (1, -1, 1))) / xp.sqrt(xp.reshape(var, (1, -1, 1)) + self.eps)
        sync = self.fw.norm_sync
        if sync is not None:
            mean, var, n = self._global_moments(x, sync)
        else:
            mean = xp.mean(x, axis=(0, 2), keepdims=True)
            var = xp.mean((x - mean) ** 2, axis=(0, 2), keepdims=True)
            n = self.backend.size_along(x, (0, 2))
        self._update_running(mean, var, n)
        return (x - mean) / xp.sqrt(var + self.eps)

    def _global_moments(self, x, sync):
        """Mean and (biased) variance per channel, shape (1, C, 1), over the global batch of
        which ``x`` (B_r, C, N) is this replica's shard, and the global count (1, C, 1) of values:
        ``sync`` is the framework's differentiable sum over the replicas (``fw.norm_sync``, set
        while ``fit`` trains on several), so the gradient flows through the other replicas'
        statistics as through one batch."""
        xp = self.backend.xp
        total = xp.sum(x, axis=(0, 2), keepdims=True)
        count = total * 0 + self.backend.size_along(x, (0, 2))  # (1, C, 1); x is finite here
        sums = xp.concat([total, count], axis=0)
        sums = sync(sums)  # (2, C, 1): sum of x and count
        n = sums[1:2]
        mean = sums[0:1] / n
        var = sync(xp.sum((x - mean) ** 2, axis=(0, 2), keepdims=True)) / n
        return mean, var, n

    def _update_running(self, mean, var, n):
        """Running averages from the batch ``mean``/``var`` over ``n`` values per channel (a
        float, or a tensor when the count is only known at run time or comes from the replicas)."""
        xp, m = self.backend.xp, self.momentum
        if isinstance(n, float):
            correction = n / (n - 1) if n > 1 else 1.0
        else:  # a run-time count (traced batch dimension, or summed over the replicas)
            correction = xp.reshape(n / xp.maximum(n - 1, 1), (-1,))
        new_mean = (1 - m) * self.running_mean + m * xp.reshape(mean, (-1,))
        new_var = (1 - m) * self.running_var + m * xp.reshape(var, (-1,)) * correction
        self.fw.assign(self.running_mean, new_mean)
        self.fw.assign(self.running_var, new_var)


class Down(NativeModule):
    """One level down the NESTED pyramid: (B, C, N) → (B, C, N_parent), max or mean.

    Each output cell takes the max (or mean) of its children present in the input.

    Parameters
    ----------
    nside : int
        Resolution of the input maps (>= 2); the output is at ``nside // 2``.
    cell_ids : array_like of int, shape (N,), optional
        NESTED ids of the input cells, any order; ``None`` = full sky (N = 12 nside²).
    mode : {"max", "mean"}
    backend : str or Backend
        Keyword-only.

    Attributes
    ----------
    parent_ids : ndarray of int64, shape (N_parent,)
        ``np.unique(cell_ids // 4)``: the output cells, in this order.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import Down
    >>> x = np.arange(48, dtype="float32").reshape(1, 1, 48)  # (B, C, N) at nside 2
    >>> down = Down(2, backend="numpy")
    >>> y = down(x)
    >>> y.shape
    (1, 1, 12)
    >>> y[0, 0, :3]
    array([ 3.,  7., 11.], dtype=float32)
    >>> Down(2, mode="mean", backend="numpy")(x)[0, 0, :3]
    array([1.5, 5.5, 9.5], dtype=float32)

    A regional domain keeps the parents present:

    >>> region = Down(2, cell_ids=np.arange(8, 16), backend="numpy")
    >>> region.parent_ids
    array([2, 3])
    >>> region(np.arange(8, dtype="float32").reshape(1, 1, 8))
    array([[[3., 7.]]], dtype=float32)
    """

    def __init__(self, nside, cell_ids=None, mode="max", *, backend):
        super().__init__(backend=backend)
        if mode not in DOWN_MODES:
            raise ValueError(f"down_type must be one of {DOWN_MODES}, got {mode!r}")
        self.plan, self.mode = DownPlan(nside, cell_ids), mode
        self._fc_prepare()

    def _fc_prepare(self):
        warm_plan(self.plan, self.backend, self.mode)

    @property
    def parent_ids(self):
        return self.plan.parent_ids

    def forward(self, x):
        return self.plan(x, self.mode, self.backend)


class Up(NativeModule):
    """One level up: (B, C, N_coarse) → (B, C, M), each target cell takes its parent's value.

    Parameters
    ----------
    nside : int
        Resolution of the input (coarse) maps; the output is at ``2 * nside``.
    cell_ids : array_like of int, shape (N_coarse,), optional
        NESTED ids of the input cells, any order; ``None`` = full sky.
    target_ids : array_like of int, shape (M,), optional
        NESTED ids at ``2 * nside`` of the output cells, any order, each with its parent in
        ``cell_ids``; default: every child of ``cell_ids`` (M = 4 N_coarse).
    backend : str or Backend
        Keyword-only.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import Up
    >>> x = np.arange(12, dtype="float32").reshape(1, 1, 12)  # (B, C, N) at nside 1
    >>> y = Up(1, backend="numpy")(x)
    >>> y.shape
    (1, 1, 48)
    >>> y[0, 0, :8]
    array([0., 0., 0., 0., 1., 1., 1., 1.], dtype=float32)
    >>> up = Up(1, cell_ids=[2, 3], target_ids=[8, 9, 13], backend="numpy")
    >>> up(np.array([[[10.0, 20.0]]], "float32"))
    array([[[10., 10., 20.]]], dtype=float32)
    """

    def __init__(self, nside, cell_ids=None, target_ids=None, *, backend):
        super().__init__(backend=backend)
        self.plan = UpPlan(nside, cell_ids, target_ids)
        self._fc_prepare()

    def _fc_prepare(self):
        warm_plan(self.plan, self.backend)

    def forward(self, x):
        return self.plan(x, self.backend)


def make_stencil(nside, cell_ids, kernel_sz, gauge_type, n_gauges, backend, dtype):
    return SphericalStencil(nside, kernel_sz, cell_ids=cell_ids, gauge_type=gauge_type, n_gauges=n_gauges,
                            backend=backend, dtype=dtype)


def warm_plan(plan, backend, *args):
    """Run a down/up ``plan`` once on zeros (1, 1, N) of each float dtype, eagerly, so that the
    index arrays it keeps on the device exist before any graph is traced: made lazily inside
    ``torch.export``, they would be fake tensors, cached and returned by later eager calls."""
    for dtype in BACKEND_FLOAT_NAMES.get(backend.name, FLOAT_NAMES):
        try:
            zeros = backend.asarray(np.zeros((1, 1, plan.n_cells)), dtype=dtype)
        except ValueError:  # a dtype the backend cannot hold now (JAX without 64-bit mode): unused
            continue
        plan(zeros, *args, backend=backend)
