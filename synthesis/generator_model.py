"""The decoder behind :class:`~foscat_core.synthesis.Generator`: its pyramid of levels, its
argument checks and the latent noise, drawn with NumPy so every backend sees the same numbers.

Levels run from coarse to fine: level 0 is the latent level (``latent_nside``, the ancestors of
the domain's cells there), the last level is the target domain (``nside``, the user's cells in
the user's order). Each level holds one block ``(conv -> norm -> ReLU) x n_convs`` on the
level's oriented stencil; between levels an ``Up`` copies each cell's features to its children,
and fresh noise channels are concatenated there (so small scales get their own randomness
instead of being a deterministic texture of the coarse noise).
"""

import numbers

import numpy as np

from foscat_core._validation import check_nside, check_positive_int
from foscat_core.nn._common import check_chanlist
from foscat_core.nn.layers import NORMS, Norm, PointwiseConv, SphericalConv
from foscat_core.nn.module import NativeModule
from foscat_core.pyramid_ops import UpPlan

FINE_LEVELS = ("hybrid", "conv", "subpixel")
OUTPUTS = ("linear", "sinh-arcsinh", "quantile")


def default_chanlist(n_levels, finest=8, coarsest=64):
    """Channels per level, finest first: ``finest`` doubling towards the coarse levels, capped at
    ``coarsest`` (``[8, 16, 32, 64]`` for four levels)."""
    return [min(finest * 2**i, coarsest) for i in range(n_levels)]


def resolve_levels(nside, chanlist, latent_nside):
    """``(chanlist, latent_nside)`` made consistent: ``len(chanlist)`` levels from ``latent_nside``
    up to ``nside`` (each level doubles nside). Either may be ``None`` (derived from the other;
    both ``None``: ``latent_nside = max(1, nside // 8)``)."""
    if chanlist is not None:
        chanlist = check_chanlist(chanlist)
    if latent_nside is not None:
        latent_nside = check_nside(latent_nside, "latent_nside")
        if latent_nside > nside:
            raise ValueError(f"latent_nside must be <= nside={nside}, got {latent_nside}")
    if chanlist is None:
        if latent_nside is None:
            latent_nside = max(1, nside // 8)
        n_levels = (nside // latent_nside).bit_length()
        return default_chanlist(n_levels), latent_nside
    n_levels = len(chanlist)
    implied = nside >> (n_levels - 1)
    if implied < 1:
        raise ValueError(f"chanlist has {n_levels} levels, which needs nside >= {2 ** (n_levels - 1)}, got nside={nside}")
    if latent_nside is not None and latent_nside != implied:
        raise ValueError(f"chanlist has {n_levels} levels, so latent_nside must be nside / 2**{n_levels - 1} = "
                         f"{implied}, got latent_nside={latent_nside} (give one of them, or a chanlist of "
                         f"{(nside // latent_nside).bit_length()} levels)")
    return chanlist, implied


def resolve_convs(n_convs, n_levels):
    """Convolutions per level, finest first: ``None`` -> 1 at the finest level, 2 elsewhere."""
    if n_convs is None:
        return [1] + [2] * (n_levels - 1)
    if isinstance(n_convs, numbers.Integral) and not isinstance(n_convs, (bool, np.bool_)):
        return [check_count(n_convs, "n_convs", 1)] * n_levels
    if isinstance(n_convs, (str, bytes)) or not hasattr(n_convs, "__len__") or len(n_convs) != n_levels:
        raise ValueError(f"n_convs must be an integer >= 1 or a list of {n_levels} (one per level, finest first), "
                         f"got {n_convs!r}")
    return [check_count(k, "n_convs", 1) for k in n_convs]


def pyramid_levels(nside, nested_ids, n_levels):
    """``[(nside, NESTED ids or None), ...]`` from the latent level (coarsest) to the target.

    The target level keeps the user's order (``nested_ids``); coarser levels hold the ancestors,
    ascending; ``None`` means a NESTED full sky.
    """
    levels = [(nside, nested_ids)]
    for _ in range(n_levels - 1):
        ns, ids = levels[-1]
        levels.append((ns // 2, None if ids is None else np.unique(ids // 4)))
    return levels[::-1]


class LevelBlock(NativeModule):
    """``n_convs`` times (SphericalConv -> Norm -> ReLU) on one level: (B, C_in, N) -> (B, C_out, N).

    With a normalisation the convolutions have no bias (the norm's shift takes its place), and
    instance norm + ReLU run as one affine map per (sample, channel) on the centred output: fewer
    passes over the finest, largest levels than ``Norm`` followed by ``relu`` (same numbers to
    rounding).
    """

    def __init__(self, in_channels, out_channels, stencil, norm, n_convs, seeds, pointwise=False):
        super().__init__(backend=stencil.backend)
        convs, norms, c_prev = [], [], in_channels
        for i in range(n_convs):
            if pointwise:  # 1 x 1 convolutions (the sub-pixel finest level)
                convs.append(PointwiseConv(c_prev, out_channels, backend=stencil.backend, dtype=stencil.dtype,
                                           bias=norm == "none", seed=seeds[i]))
            else:
                convs.append(SphericalConv(c_prev, out_channels, stencil, bias=norm == "none", seed=seeds[i]))
            norms.append(Norm(out_channels, norm, backend=stencil.backend, dtype=stencil.dtype))
            c_prev = out_channels
        self.add_child("convs", convs)
        self.add_child("norms", norms)

    def forward(self, x):
        for conv, norm in zip(self.convs, self.norms):
            x = norm_relu(self, conv(x), norm)
        return x


def norm_relu(module, y, norm):
    """``relu(norm(y))``; instance norm as one affine map per (sample, channel) of the centred ``y``."""
    if norm.kind != "instance":
        return module.fw.relu(norm(y))
    xp = module.backend.xp
    d = y - xp.mean(y, axis=2, keepdims=True)
    var = xp.mean(d * d, axis=2, keepdims=True)
    a = xp.reshape(norm.scale, (1, -1, 1)) / xp.sqrt(var + norm.eps)
    return module.fw.relu(d * a + xp.reshape(norm.shift, (1, -1, 1)))


class HybridFineBlock(NativeModule):
    """The finest level of ``fine_level="hybrid"``, after its :class:`SubpixelUp`:
    ``relu(norm(y))`` then ``n_convs - 1`` times (1x1 conv -> norm -> ReLU), (B, C, N) -> (B, C, N).

    The sub-pixel convolution before it reads the parent level's features concatenated with the
    finest level's noise, drawn at the parent level with four channels per noise map (channel
    ``4 c + q``: noise map ``c`` at child ``q``). So each child's value mixes, through a K x K
    stencil on the parent level, the coarse features and the fresh noise of all the children of
    the parent's neighbours: a learned fine-scale texture (not 1x1 mixing of white noise, as in
    ``fine_level="subpixel"``) over at least the receptive field of copy-up + K x K convolution
    at ``nside`` (``fine_level="conv"``), with every wide convolution run on a quarter of the cells.
    """

    def __init__(self, channels, stencil, norm, n_convs, seeds):
        super().__init__(backend=stencil.backend)
        self.add_child("norm", Norm(channels, norm, backend=stencil.backend, dtype=stencil.dtype))
        self.add_child("rest", [LevelBlock(channels, channels, stencil, norm, n_convs - 1, seeds, pointwise=True)]
                       if n_convs > 1 else [])  # a list: no None children

    def forward(self, y):
        x = norm_relu(self, y, self.norm)
        for block in self.rest:
            x = block(x)
        return x


class SubpixelUp(NativeModule):
    """One level up by a learned sub-pixel convolution: (B, C_in, N_parent) -> (B, C_out, M).

    A spherical convolution on the parent level gives ``4 * C_out`` channels, ``C_out`` per child
    position ``q = nested_id % 4`` (channel ``c * 4 + q``); each child cell takes its own group
    from its parent. A learned, cheap replacement of copy-up followed by a convolution at the
    fine level (the strided transposed convolution of image decoders): the convolution runs on a
    quarter of the cells.

    Examples
    --------
    >>> import numpy as np
    >>> import foscat_core as fc
    >>> st = fc.SphericalStencil(2, 3, backend="numpy")
    >>> up = SubpixelUp(3, 2, st, None, None, seed=0)
    >>> y = up(np.ones((5, 3, 48), "float32"))     # (B, C_in, N_parent) -> (B, C_out, 4 N_parent)
    >>> y.shape, bool(np.allclose(y[:, :, 0::4], y[:, :, :1]))   # a flat map: child 0 alike everywhere
    ((5, 2, 192), True)

    Parameters
    ----------
    in_channels, out_channels : int
    stencil : SphericalStencil
        The parent level's stencil (its cells are the parents, in the stencil's order).
    parent_ids : ndarray or None
        NESTED ids of the parent level (``None``: full sky); ``target_ids``: NESTED ids of the
        children, in the output's order.
    """

    def __init__(self, in_channels, out_channels, stencil, parent_ids, target_ids, seed):
        super().__init__(backend=stencil.backend)
        self.add_child("conv", SphericalConv(in_channels, 4 * out_channels, stencil, bias=False, seed=seed))
        self.out_channels = out_channels
        plan = UpPlan(stencil.nside, parent_ids, target_ids)
        nested = np.asarray(plan.target_ids, dtype=np.int64)  # NESTED: the plan is built nest=True
        self._n_parent = plan.n_cells
        # y (B, C, 4, N_parent) transposed to (B, C, N_parent, 4) and read flat: child n takes
        # flat[p_n * 4 + q_n]; a NESTED full sky (children parent by parent) needs no gather.
        flat = plan.positions * 4 + nested % 4
        identity = bool(np.array_equal(flat, np.arange(4 * self._n_parent)))
        object.__setattr__(self, "_flat", None if identity else self.backend.index_array(flat))  # made eagerly

    def forward(self, h):
        xp = self.backend.xp
        y = self.conv(h)
        b = int(y.shape[0]) if y.shape[0] is not None else -1
        y = xp.permute_dims(xp.reshape(y, (b, self.out_channels, 4, self._n_parent)), (0, 1, 3, 2))
        y = xp.reshape(y, (b, self.out_channels, 4 * self._n_parent))
        return y if self._flat is None else xp.take(y, self._flat, axis=2)


def check_fine_level(fine_level):
    if fine_level not in FINE_LEVELS:
        raise ValueError(f"fine_level must be one of {FINE_LEVELS}, got {fine_level!r}")
    return fine_level


def check_output(output):
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return output


def gaussian_quantiles(n):
    """The standard normal's quantiles at the ``n`` ranks ``(i + 0.5) / n`` (float64)."""
    from scipy.special import ndtri

    return ndtri((np.arange(n) + 0.5) / n)


def quantile_output(bk, y, quantiles):
    """Each row of ``y`` (B, N) replaced by ``quantiles`` (N,) in the order of its ranks: the
    samples take the target's values exactly. Straight-through: the gradient passes to ``y``
    as if the map were the identity."""
    return y + bk.stop_gradient(bk.values_at_ranks(y, quantiles) - y)


def sinh_arcsinh(xp, u, log_delta, skew):
    """``sinh(exp(log_delta) * asinh(u) - skew)``: a monotone map of the head's output with two
    learned numbers, the identity at ``(0, 0)`` (Jones & Pewsey's sinh-arcsinh transform):
    ``skew`` sets the asymmetry of the tails (> 0: a heavier lower tail; < 0: upper), ``delta``
    their weight (> 1: heavier). ``asinh`` and ``sinh`` are written with ``exp``/``log`` (odd
    part by ``where``), which every backend's namespace has."""
    a = xp.log(xp.abs(u) + xp.sqrt(u * u + 1.0))
    v = xp.exp(log_delta) * xp.where(u < 0, -a, a) - skew
    return (xp.exp(v) - xp.exp(-v)) * 0.5


def check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def check_count(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def noise_shapes(latent_channels, noise_channels, level_sizes):
    """Per level, the channel count of its noise: the latent at level 0, ``noise_channels`` above
    (levels with 0 channels draw nothing)."""
    return [latent_channels] + [noise_channels] * (len(level_sizes) - 1)


def draw_noise(seeds, channels, sizes, dtype):
    """Per level, a NumPy array (n, channels[l], sizes[l]) of standard normal noise.

    Sample ``i`` is drawn from its own generator ``numpy.random.default_rng(seeds[i])`` (level by
    level), so a sample depends on its seed only: not on the batch it is drawn in, nor on the
    backend.
    """
    n = len(seeds)
    out = [np.empty((n, c, s), dtype=dtype) for c, s in zip(channels, sizes)]
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for arr in out:
            if arr.shape[1]:
                arr[i] = rng.standard_normal(arr.shape[1:], dtype=np.float32)
    return out


def sample_seeds(seed, n):
    """``n`` per-sample seeds (ints) from ``seed`` (int, or ``None`` for fresh entropy)."""
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64)]


__all__ = ["FINE_LEVELS", "OUTPUTS", "check_output", "gaussian_quantiles", "quantile_output", "sinh_arcsinh", "HybridFineBlock", "LevelBlock", "norm_relu", "SubpixelUp", "check_fine_level", "check_chanlist", "check_count", "check_norm", "draw_noise", "noise_shapes",
           "pyramid_levels", "resolve_levels", "sample_seeds", "check_positive_int"]
