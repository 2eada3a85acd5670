"""The morphology term of a synthesis loss: how a map's level lines look, at the pixel scale.

Scattering statistics fix a map's power in every octave and :func:`histogram_distance` its
one-point distribution, but neither fixes how the map crosses a level. On a "filament" target
(the square of a smoothed Gaussian field: thin bright ridges on a floor) a synthesis on both ends
with the boundary length V1 and the Euler characteristic V2 of its excursion sets 0.29 and 0.43
of their range away from the target's (``benchmarks/README.md``, issue 13).

Both are conditional, local quantities. The boundary length of ``{x >= nu}`` per unit area is
``p(nu) E[|grad x| | x = nu]``; its Euler characteristic is the integral of the level line's
geodesic curvature ``kappa`` along it, ``p(nu) E[kappa |grad x| | x = nu]`` (Gauss-Bonnet). With
the histogram term fixing ``p(nu)``, :func:`morphology_distance` matches the rest: local
derivatives from a least-squares quadratic fit on the 3 x 3 tangent-plane stencil of every cell
(:class:`~foscat_core.SphericalStencil`, so regional domains work too), and their means over the
cells weighted by smooth Gaussian windows of the value centred on the target's quantiles.

The windows make the term a smooth function of ``x`` (hard bins by rank would jump whenever a
cell changes bin, which stops L-BFGS's line search). Keep its weight small: in the README's loss
(with ``10 * histogram_distance``) a weight of 0.3-0.5 brings the filaments' V1 and V2 to 0.06-0.07
of their range at nside 64 (a new realisation of the process: 0.03-0.05), 0.1 leaves them at
0.11-0.18, and from 3 up the term fights the statistics and 200 L-BFGS iterations end far from
the target (``benchmarks/synthesis_quality.py``).
"""

import functools
import numbers

import numpy as np

from foscat_core._arrays import to_host
from foscat_core.backends import backend_of, get_backend

#: The local features :func:`morphology_distance` can match (each conditioned on the value).
FEATURES = ("gradient", "curvature", "laplacian")


@functools.lru_cache(maxsize=1)
def fit_kernels():
    """The derivative kernels of the 3 x 3 stencil, shape (1, 5, 9) (a ``SphericalStencil.conv`` weight).

    Rows: d/du, d/dv, d2/du2, d2/dv2, d2/dudv of the least-squares fit
    ``a + b u + c v + d u**2 + e v**2 + f u v`` to the 9 taps (``u`` east, ``v`` north, in pixels
    of the map; tap ``p = 3 i + j`` at ``(u, v) = (j - 1, 1 - i)``). Exact on quadratics.

    >>> import numpy as np
    >>> u, v = np.tile([-1.0, 0.0, 1.0], 3), np.repeat([1.0, 0.0, -1.0], 3)
    >>> np.round(fit_kernels()[0] @ (2 * u - v + 3 * u * v + 0.5 * v * v), 12).tolist()
    [2.0, -1.0, 0.0, 1.0, 3.0]
    """
    i, j = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    u, v = (j - 1).ravel().astype(np.float64), (1 - i).ravel().astype(np.float64)
    design = np.stack([np.ones(9), u, v, u * u, v * v, u * v], axis=1)
    fit = np.linalg.pinv(design)  # (6, 9): the coefficients from the taps
    return np.stack([fit[1], fit[2], 2 * fit[3], 2 * fit[4], fit[5]])[None]


def local_features(xp, derivatives, features, eps):
    """(B, F, N) features from ``derivatives`` (B, 5, N) (the maps convolved with :func:`fit_kernels`).

    ``gradient``: ``|grad x|``; ``curvature``: ``kappa |grad x| = (x_uu x_v**2 - 2 x_uv x_u x_v
    + x_vv x_u**2) / |grad x|**2`` (minus the level line's curvature times the gradient's length);
    ``laplacian``: ``x_uu + x_vv``. ``eps`` keeps the first two finite where the gradient vanishes.
    All three are invariant under rotations of the tangent frame.
    """
    gu, gv, huu, hvv, huv = (derivatives[:, k] for k in range(5))
    g2 = gu * gu + gv * gv
    out = []
    for name in features:
        if name == "gradient":
            out.append(xp.sqrt(g2 + eps))
        elif name == "curvature":
            out.append((huu * gv * gv - 2.0 * huv * gu * gv + hvv * gu * gu) / (g2 + eps))
        else:
            out.append(huu + hvv)
    return xp.stack(out, axis=1)


@functools.lru_cache(maxsize=16)
def _stencil(nside, ids_bytes, nest, backend, dtype):
    """The 3 x 3 stencil on ``backend`` (the Backend object of the maps: its device too)."""
    from foscat_core.stencils import SphericalStencil

    cell_ids = None if ids_bytes is None else np.frombuffer(ids_bytes, dtype=np.int64)
    return SphericalStencil(nside, 3, cell_ids=cell_ids, nest=nest, backend=backend, dtype=dtype)


def _windows(xp, x, centres, widths):
    """(B, K, N) windows ``exp(-(x - c_k)**2 / (2 h_k**2))`` of maps ``x`` (B, N); c, h: (K, 1)."""
    return xp.exp(-0.5 * ((x[:, None, :] - centres) / widths) ** 2)


@functools.lru_cache(maxsize=8)
def _target_side(t_bytes, shape, n_bins, features, nside, ids_bytes, nest):
    """Host float64: window centres and widths (K, 1), the target's windowed feature means (F, K)
    and their scales (F, K), and ``eps``, of the target (its float64 bytes, ``shape``)."""
    t = np.frombuffer(t_bytes, dtype=np.float64).reshape(shape)
    var = float(t.var())
    eps = 1e-12 * var
    st = _stencil(nside, ids_bytes, nest, get_backend("numpy"), "float64")
    f = local_features(np, st.conv(t[:, None, :], fit_kernels()), features, eps)  # (M, F, N)
    q = np.quantile(t, np.linspace(0.02, 0.98, n_bins))
    edges = np.concatenate([[2 * q[0] - q[1]], q, [2 * q[-1] - q[-2]]])
    centres = q[:, None]
    widths = np.maximum(0.25 * (edges[2:] - edges[:-2]), 1e-6 * np.sqrt(var))[:, None]
    w = _windows(np, t, centres, widths)  # (M, K, N)
    means = np.einsum("mfn,mkn->fk", f, w) / t.size
    spread = f.transpose(1, 0, 2).reshape(len(features), -1).std(axis=1)
    scale = np.maximum(spread, 1e-300)[:, None] * np.maximum(w.mean(axis=(0, 2)), 1e-300)[None, :]
    return centres, widths, means, scale, eps


def _check_options(n_bins, features):
    if isinstance(n_bins, (bool, np.bool_)) or not isinstance(n_bins, numbers.Integral):
        raise TypeError(f"n_bins must be an integer >= 2, got {type(n_bins).__name__} {n_bins!r}")
    if n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins}")
    if isinstance(features, str):
        features = (features,)
    try:
        features = tuple(features)
    except TypeError:
        raise TypeError(f"features must be a sequence of names from {FEATURES}, "
                        f"got {type(features).__name__}") from None
    if not features or any(not isinstance(f, str) or f not in FEATURES for f in features) \
            or len(set(features)) != len(features):
        raise ValueError(f"features must be a non-empty sequence of distinct names from {FEATURES}, got {features!r}")
    return int(n_bins), features


def _domain(n, nside, cell_ids, nest, name):
    """(nside, ids bytes or None) of maps of ``n`` cells."""
    if cell_ids is None:
        side = int(round(np.sqrt(n / 12.0)))
        if n < 12 or 12 * side * side != n or side & (side - 1):
            raise ValueError(f"{name} must be full-sky NESTED maps (12 * nside**2 cells, nside a power of two) "
                             f"when cell_ids is None, got {n} cells")
        if nside is not None and nside != side:
            raise ValueError(f"{name} has {n} cells, the full sky at nside {side}, not nside {nside}")
        return side, None
    ids = np.asarray(cell_ids, dtype=np.int64).ravel()
    if nside is None:
        raise ValueError("nside is required when cell_ids is given")
    if ids.size != n:
        raise ValueError(f"{name} must have one value per cell of cell_ids ({ids.size} cells), got {n}")
    return int(nside), ids.tobytes()


def morphology_distance(x, target, n_bins=16, features=("gradient", "curvature"), nside=None, cell_ids=None, nest=True):
    """Distance between the level-line geometry of ``x`` and of ``target``: a differentiable term
    that pins the boundary length and Euler characteristic of excursion sets in a synthesis.

    For every feature ``f`` (see below) and every window ``k`` it compares
    ``M_fk(x) = mean over maps and cells of f(x) * w_k(x)``, with the Gaussian window
    ``w_k(x) = exp(-(x - c_k)**2 / (2 h_k**2))`` centred on the target's quantile ``c_k``
    (``n_bins`` of them, from 2% to 98%; ``h_k`` a quarter of the distance between the
    neighbouring quantiles), with the target's, and returns
    ``mean over f, k of ((M_fk(x) - M_fk(target)) / S_fk)**2`` where
    ``S_fk = std(f(target)) * mean(w_k(target))``. ``M_fk`` of the gradient is a smoothed boundary
    length at level ``c_k`` and that of the curvature a smoothed Euler characteristic; the value
    is 0 when ``x`` is ``target`` (or a rotation of it, up to pixelisation). Add it to the loss
    with :func:`~foscat_core.synthesis.histogram_distance` (which fixes the density of values).

    Derivatives come from a least-squares quadratic fit on the 3 x 3 stencil of every cell
    (:func:`fit_kernels`, :class:`~foscat_core.SphericalStencil`), in the map's units per pixel;
    every feature is invariant under rotations of the local frame.

    Parameters
    ----------
    x : backend array, shape (N,) or (B, N)
        The map(s) being synthesised (the ``x`` of a :class:`~foscat_core.synthesis.Loss`
        function), NumPy, torch, TensorFlow or JAX; NESTED full sky when ``cell_ids`` is None.
    target : array, shape (N_t,) or (M, N_t)
        The target map(s), host or backend (the means are averaged over its maps). A full-sky
        target may have another nside than ``x``; with ``cell_ids`` it must be on the same cells.
    n_bins : int
        Number of value windows (>= 2).
    features : sequence of str
        Among ``"gradient"`` (``|grad x|``: boundary length), ``"curvature"`` (the level line's
        curvature times ``|grad x|``: Euler characteristic) and ``"laplacian"``.
    nside, cell_ids, nest
        A regional domain: ``x``'s cells ``cell_ids`` (shape (N,)) at ``nside``, in NESTED
        (``nest=True``) or RING ids. Default: the full sky, NESTED.

    Returns
    -------
    backend scalar
        The distance, of ``x``'s backend and dtype (a NumPy float for NumPy input).

    Raises
    ------
    TypeError
        ``n_bins`` not an integer, ``features`` not a sequence of names.
    ValueError
        A bad shape or domain of ``x`` or ``target``, a target with NaN/inf values or constant,
        ``n_bins < 2``, an unknown feature name.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.synthesis import morphology_distance
    >>> t = np.random.default_rng(0).normal(size=12 * 8**2) ** 2      # nside 8, NESTED
    >>> round(float(morphology_distance(t, t)), 12)
    0.0
    >>> float(morphology_distance(np.random.default_rng(1).normal(size=t.size), t)) > 0.01
    True
    """
    n_bins, features = _check_options(n_bins, features)
    bk = backend_of(x)
    if bk is None:  # NumPy arrays, lists
        bk, x = get_backend("numpy"), np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
    shape = tuple(x.shape)
    if len(shape) not in (1, 2) or shape[-1] < 1:
        raise ValueError(f"x must be a map (N,) or maps (B, N), got shape {shape}")
    xp = bk.xp
    if len(shape) == 1:
        x = xp.reshape(x, (1, shape[0]))
    if not isinstance(nest, (bool, np.bool_)):
        raise TypeError(f"nest must be True (NESTED) or False (RING), got {nest!r}")
    side, ids = _domain(shape[-1], nside, cell_ids, bool(nest), "x")

    t = np.asarray(to_host(target), dtype=np.float64)
    if t.ndim not in (1, 2) or t.shape[-1] < 2:
        raise ValueError(f"target must be a map (N,) or maps (M, N) with N >= 2, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("target holds NaN or infinite values")
    t = np.ascontiguousarray(t.reshape(-1, t.shape[-1]))
    if t.var() <= 0.0:
        raise ValueError("target is constant: its morphology distance is undefined (its variance is zero)")
    t_side, t_ids = _domain(t.shape[-1], None if ids is None else side, cell_ids, bool(nest), "target")
    centres, widths, means, scale, eps = _target_side(t.tobytes(), t.shape, n_bins, features, t_side, t_ids,
                                                      bool(nest))

    dtype = bk.dtype_name(x)
    st = _stencil(side, ids, bool(nest), bk, dtype)
    f = local_features(xp, st.conv(x[:, None, :], bk.asarray(fit_kernels(), dtype=dtype)), features, eps)  # (B, F, N)
    w = _windows(xp, x, bk.asarray(centres, dtype=dtype), bk.asarray(widths, dtype=dtype))  # (B, K, N)
    got = xp.mean(xp.matmul(f, xp.permute_dims(w, (0, 2, 1))), axis=0) / shape[-1]  # (F, K)
    return xp.mean(((got - bk.asarray(means, dtype=dtype)) / bk.asarray(scale, dtype=dtype)) ** 2)
