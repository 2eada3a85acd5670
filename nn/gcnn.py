"""``GCNN``: a graph CNN whose convolution is the scattering operator's oriented wavelet transform.

Each layer filters every input channel with a fixed Morlet bank (``NORIENT`` complex wavelets
and a Gaussian smoother on the K x K spherical stencil, the bank of
:mod:`foscat_core.scattering.wavelets`), turns the responses into per-cell features (the modulus
of every orientation and the smoothed map) and mixes ``C_in x F`` features into ``C_out``
channels with learned weights. Only the mixing is learned, so a layer holds
``C_in * F * C_out + C_out`` parameters with ``F = NORIENT + 1`` instead of
``C_in * K * K * C_out`` for a K x K convolution.
"""

import math

import numpy as np

from foscat_core._validation import check_kernel_size, check_positive_int
from foscat_core.ordering import as_domain
from foscat_core.pyramid_ops import DownPlan, UpPlan
from foscat_core.scattering.wavelets import conv_kernel, envelope_width

from . import losses
from ._common import check_chanlist, pyramid
from .layers import PointwiseConv, check_channels, make_stencil, warm_plan
from .module import NativeModule
from .data_sources import check_label_range, to_host
from .network import Network

FEATURES = ("modulus", "complex")
_MODULUS_EPS = 1e-12  # keeps the gradient of |z| finite at z = 0


class WaveletTransform:
    """The fixed wavelet front end shared by every layer of a :class:`GCNN` (nothing to learn).

    Parameters
    ----------
    nside : int or Domain
        nside of the maps (NESTED), or their :class:`~foscat_core.Domain` (``cell_ids`` then
        ``None``): its pyramid is used as it is, not rebuilt.
    cell_ids : array_like of int, shape (N,), optional
        Regional domain, any order (kept); ``None`` = full sky.
    KERNELSZ : int
        Odd stencil side K.
    NORIENT : int
        Orientations R of the Morlet wavelets.
    LAMBDA : float
        Envelope width factor of the bank (see :func:`~foscat_core.scattering.wavelets.morlet_bank`).
    features : {"modulus", "complex"}
        Per orientation, ``"modulus"`` keeps ``|x * psi_k|``; ``"complex"`` also keeps the real and
        imaginary parts. Both add the smoothed map ``x * phi``.
    n_scales : int
        1: the bank at the input resolution only. J > 1: also on the maps taken ``j`` levels down
        the NESTED pyramid (mean) and copied back up, for ``j < J``: J times the features.
    backend, dtype
        Of the arrays (the bank is a constant of the backend, not a variable).

    Attributes
    ----------
    n_features : int
        F, features per input channel: ``J * (R + 1)`` or ``J * (3R + 1)``.

    Calling the transform maps x (B, C, N) to (B, C * F, N).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import WaveletTransform
    >>> wt = WaveletTransform(2, None, 3, 4, 1.2, "modulus", 1, "numpy", "float32")
    >>> wt.n_features  # 4 moduli + the smoothed map
    5
    >>> wt(np.ones((2, 3, 48), "float32")).shape  # (B, C, N) -> (B, C * F, N)
    (2, 15, 48)
    >>> WaveletTransform(2, None, 3, 4, 1.2, "complex", 2, "numpy", "float32").n_features  # 2 * (3*4 + 1)
    26
    """

    def __init__(self, nside, cell_ids, KERNELSZ, NORIENT, LAMBDA, features, n_scales, backend, dtype):
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        self.n_orient = check_positive_int(NORIENT, "NORIENT")
        self.n_scales = check_positive_int(n_scales, "n_scales")
        envelope_width(KERNELSZ, LAMBDA)  # checks LAMBDA
        self.features = features
        levels = pyramid(as_domain(nside, cell_ids), self.n_scales, f"n_scales={self.n_scales}")
        self.stencils = [make_stencil(dom, None, KERNELSZ, "phi", 1, backend, dtype) for dom in levels]
        self.backend, self.dtype = self.stencils[0].backend, self.stencils[0].dtype
        self.downs = [DownPlan(dom) for dom in levels[:-1]]
        # ups[j] takes level j + 1 back to level j (the input level keeps the user's cell order).
        self.ups = [UpPlan(levels[j + 1], None, levels[j]) for j in range(len(levels) - 1)]
        self.bank = self.backend.asarray(conv_kernel(KERNELSZ, self.n_orient, LAMBDA), dtype=self.dtype)
        per_scale = self.n_orient + 1 if features == "modulus" else 3 * self.n_orient + 1
        self.n_features = self.n_scales * per_scale
        self.n_cells = self.stencils[0].n_cells

    def prepare(self):
        """Build the stencils' operators and the backend's tables now (see ``NativeModule._fc_prepare``)."""
        for stencil in self.stencils:
            self.backend.prepare_contract(stencil.operators, stencil.n_cells, 1, int(self.bank.shape[1]))
        for plan in self.downs:
            warm_plan(plan, self.backend, "mean")
        for plan in self.ups:
            warm_plan(plan, self.backend)

    def on_backend(self, backend):
        """The same transform on another backend or device (the torch ``.to()`` path)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.stencils = [st.on_backend(backend) for st in self.stencils]
        clone.backend = clone.stencils[0].backend
        clone.bank = clone.backend.asarray(self.backend.to_numpy(self.bank), dtype=self.dtype)
        return clone

    def __call__(self, x):
        """x (B, C, N) → (B, C * F, N); channel ``c * F + f`` is feature f of input channel c.

        Features of scale j (in this order): the moduli of the R orientations, for ``"complex"``
        the R real then the R imaginary parts, then the smoothed map.
        """
        xp, bk, r = self.backend.xp, self.backend, self.n_orient
        c = int(x.shape[1])
        h = xp.reshape(x, (-1, 1, self.n_cells))  # every channel of every map filtered alike
        out = []
        for j, stencil in enumerate(self.stencils):
            if j > 0:
                h = self.downs[j - 1](h, "mean", bk)
            y = stencil.conv(h, self.bank)  # (B*C, 2R + 1, N_j)
            re, im = y[:, :r, :], y[:, r:2 * r, :]
            parts = [xp.sqrt(re * re + im * im + _MODULUS_EPS)]
            if self.features == "complex":
                parts += [re, im]
            parts.append(y[:, 2 * r:, :])
            f = xp.concat(parts, axis=1)
            for up in reversed(self.ups[:j]):
                f = up(f, bk)
            out.append(f)
        f = out[0] if len(out) == 1 else xp.concat(out, axis=1)
        return xp.reshape(f, (-1, c * self.n_features, self.n_cells))


class WaveletConv(NativeModule):
    """Wavelet features of every input channel, mixed by learned weights: (B, C_in, N) → (B, C_out, N).

    ``y = W @ features(x) + b`` with ``W`` (C_out, C_in * F) and ``b`` (C_out,), F the
    transform's ``n_features``. No activation (the network applies it).

    Parameters
    ----------
    in_channels, out_channels : int
    transform : WaveletTransform
        The fixed bank (its backend and dtype are the layer's).
    seed : int or numpy Generator, optional
        He-normal initialisation of ``weight``; ``bias`` starts at 0.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import WaveletConv, WaveletTransform
    >>> wt = WaveletTransform(2, None, 3, 4, 1.2, "modulus", 1, "numpy", "float32")  # F = 5
    >>> layer = WaveletConv(3, 6, wt, seed=0)
    >>> layer.weight.shape, layer.n_parameters()  # (C_out, C_in * F); 6 * 15 + 6
    ((6, 15), 96)
    >>> layer(np.ones((2, 3, 48), "float32")).shape  # (B, C_in, N) -> (B, C_out, N)
    (2, 6, 48)
    """

    def __init__(self, in_channels, out_channels, transform, *, seed=None):
        super().__init__(backend=transform.backend)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        object.__setattr__(self, "transform", transform)  # constants only: nothing to track or save
        fan_in = self.in_channels * transform.n_features
        rng = np.random.default_rng(seed)
        self.add_parameter("weight", rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(out_channels, fan_in)),
                           transform.dtype)
        self.add_parameter("bias", np.zeros(out_channels), transform.dtype)
        self._fc_prepare()

    def _fc_prepare(self):
        self.transform.prepare()

    def forward(self, x):
        check_channels(x, self.in_channels, "x", "this WaveletConv")
        xp = self.backend.xp
        return xp.matmul(self.weight, self.transform(x)) + xp.reshape(self.bias, (1, -1, 1))


def _hidden_layer(layer, h):
    """A wavelet layer and its ReLU (the module as an argument: what a checkpointed block runs)."""
    return layer.fw.relu(layer(h))


def _last_layer(layer, h):
    return layer(h)


class GCNN(Network):
    """Graph CNN on HEALPix maps with the scattering wavelet transform as its convolution.

    ``len(chanlist) - 1`` layers; layer i takes the wavelet features of its ``chanlist[i]``
    channels (per channel, the modulus at each of ``NORIENT`` orientations and the smoothed map),
    mixes them into ``chanlist[i + 1]`` channels (learned weights and bias), then a ReLU (none
    after the last layer). A head maps the last layer's channels to ``nparam`` outputs: per cell
    (a 1x1 map), or with ``global_pool=True`` after a mean over the domain's cells (one vector of
    ``nparam`` numbers per map, e.g. a cosmological parameter). The wavelets are fixed, so a layer
    holds ``C_in * F * C_out + C_out`` weights (F = NORIENT + 1) instead of ``C_in * K**2 * C_out``.

    Parameters
    ----------
    nparam : int
        Outputs per cell, or per map with ``global_pool=True``.
    KERNELSZ : int
        Odd stencil side K of the wavelets.
    NORIENT : int
        Wavelet orientations.
    chanlist : list of int
        ``[n_chan_in, c_1, ..., c_L]``: the input channels, then each layer's (at least 2 items).
    in_nside : int
        nside of the input maps.
    cell_ids : array_like of int, shape (N_cells,), optional
        Ids (in the ``nest`` ordering) of a regional domain, any order (outputs follow it);
        ``None`` = full sky.
    global_pool : bool
        Average over cells before the head: output (B, nparam) instead of (B, nparam, N_cells).
    LAMBDA : float
        Envelope width factor of the wavelets (``sigma = LAMBDA * (K // 2) / 2`` pixels).
    features : {"modulus", "complex"}
        ``"complex"`` adds the real and imaginary parts of every wavelet response (F = 3 NORIENT + 1).
    n_scales : int
        J > 1 also applies the bank on maps averaged 1 .. J-1 levels down the pyramid (copied back
        up): J times the features, a larger receptive field per layer.
    task : {"regression", "segmentation"}
        With ``global_pool``, ``"segmentation"`` classifies whole maps.
    final_activation : {None, "none", "sigmoid", "softmax"}
        As :class:`~foscat_core.nn.HealpixUNet` (softmax over the ``nparam`` axis).
    device : str, optional
    dtype : {"float32", "float64"}
    backend : str or Backend, optional
    seed : int
        Weight initialisation seed (the same network on every backend).
    nest, mask_missing : bool
        As :class:`~foscat_core.nn.HealpixUNet`; with ``mask_missing`` the first layer takes
        ``2 * chanlist[0]`` channels (values and validity).
    checkpointing : bool
        As :class:`~foscat_core.nn.HealpixUNet`, each wavelet layer (with its ReLU) being a block.

    Shapes: ``forward(x)`` with x (B, chanlist[0], N_cells) → (B, nparam, N_cells), or (B, nparam)
    with ``global_pool=True``. ``fit`` takes targets of the output's shape; ``predict`` returns it.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn.gcnn import GCNN
    >>> net = GCNN(nparam=2, chanlist=[1, 8, 4], in_nside=4, backend="numpy")
    >>> net(np.zeros((3, 1, 192), "float32")).shape
    (3, 2, 192)
    >>> GCNN(nparam=2, chanlist=[1, 8, 4], in_nside=4, global_pool=True, backend="numpy").predict(
    ...     np.zeros((3, 1, 192))).shape
    (3, 2)
    """

    def __init__(self, nparam=1, KERNELSZ=3, NORIENT=4, chanlist=(1, 16, 32, 16, 1), in_nside=64, cell_ids=None,
                 global_pool=False, LAMBDA=1.2, features="modulus", n_scales=1, task="regression",
                 final_activation=None, device=None, dtype="float32", backend=None, seed=0, nest=True,
                 mask_missing=False, checkpointing=False):
        super().__init__(backend=backend, device=device)
        chanlist = check_chanlist(chanlist)
        if len(chanlist) < 2:
            raise ValueError(f"chanlist must list the input channels and at least one layer's, got {chanlist!r}")
        nparam = check_positive_int(nparam, "nparam")
        check_kernel_size(KERNELSZ, "KERNELSZ")
        check_positive_int(NORIENT, "NORIENT")
        envelope_width(KERNELSZ, LAMBDA)  # checks LAMBDA
        if not isinstance(global_pool, (bool, np.bool_)):
            raise ValueError(f"global_pool must be True or False, got {global_pool!r}")
        config = dict(nparam=nparam, KERNELSZ=KERNELSZ, NORIENT=NORIENT, chanlist=chanlist, in_nside=in_nside,
                      global_pool=bool(global_pool), LAMBDA=float(LAMBDA), features=features, n_scales=n_scales,
                      task=task, final_activation=final_activation, dtype=dtype, seed=seed)
        self._init_network(config, in_nside, chanlist[0], cell_ids, nparam, task, final_activation, dtype, nest,
                           mask_missing)
        self._init_checkpointing(checkpointing)
        self.nparam, self.chanlist, self.global_pool = nparam, chanlist, bool(global_pool)
        transform = WaveletTransform(self.domain, None, KERNELSZ, NORIENT, LAMBDA, features, n_scales,
                                     self.backend, self.dtype)
        object.__setattr__(self, "transform", transform)
        seeds = iter(np.random.SeedSequence(seed).generate_state(len(chanlist)))
        widths = [self.first_layer_channels] + chanlist[1:]
        self.add_child("layers", [WaveletConv(c_in, c_out, transform, seed=next(seeds))
                                  for c_in, c_out in zip(widths[:-1], widths[1:])])
        self.add_child("head", PointwiseConv(chanlist[-1], nparam, backend=self.backend, dtype=self.dtype,
                                             seed=next(seeds)))

    def _forward(self, x):
        xp = self.backend.xp
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = self._block(_hidden_layer if i < last else _last_layer, layer, h)
        if not self.global_pool:
            return self.head(h)
        pooled = xp.mean(h, axis=-1, keepdims=True)  # over the domain's cells only
        return xp.reshape(self.head(pooled), (-1, self.nparam))

    # --- per-map outputs with global_pool ---------------------------------------------------
    def _host_targets(self, y, name, n_samples):
        if not self.global_pool:
            return super()._host_targets(y, name, n_samples)
        y = to_host(self.backend, y, name)
        if self.task == "segmentation" and self.nparam > 1 and np.issubdtype(y.dtype, np.integer):
            labels = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
            if labels.ndim != 1:
                raise ValueError(f"{name}: integer class labels must have shape (N,) or (N, 1), got {y.shape}")
            y = losses.one_hot(labels[:, None], self.nparam, 1, name)[:, :, 0]
        if y.ndim == 1 and self.nparam == 1:  # one scalar per map: (N,) is (N, 1)
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] != self.nparam:
            raise ValueError(f"{name} must have shape (N, {self.nparam}) (one row per map, global_pool=True), "
                             f"got {y.shape}")
        if y.shape[0] != n_samples:
            raise ValueError(f"{name} has {y.shape[0]} samples but the inputs have {n_samples}")
        check_label_range(self, y, name)
        return y.astype(self.dtype, copy=False)

    def predict(self, x, batch_size=16, keep_missing=False):
        """Batched inference: x (N, chanlist[0], N_cells) → (N, nparam, N_cells), or (N, nparam)
        with ``global_pool=True`` (NumPy, or a DataArray for a DataArray; see
        :meth:`Network.predict`, whose ``keep_missing`` applies to per-cell outputs)."""
        out = super().predict(x, batch_size, keep_missing)
        if self.global_pool and out.ndim == 3:  # no samples: the base's empty result is per cell
            return np.zeros((0, self.nparam), dtype=self.dtype)
        return out
