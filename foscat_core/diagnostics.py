"""Quality diagnostics of full-sky HEALPix maps (NumPy, backend-neutral): octave band powers,
one-point moments and the Minkowski functionals of excursion sets.

They compare a synthesised map with its target (``benchmarks/synthesis_quality.py``).

>>> import healpy as hp, numpy as np
>>> from foscat_core.diagnostics import band_power_ratios, moments
>>> np.random.seed(0)
>>> m = hp.reorder(hp.synfast(np.ones(48), 16), r2n=True)       # a NESTED map, nside 16
>>> bands, ratios = band_power_ratios(2 * m, m)
>>> bands.tolist(), np.round(ratios, 6).tolist()                # (n_bands, 2), (B, n_bands)
([[4, 8], [8, 16], [16, 32]], [[4.0, 4.0, 4.0]])
>>> round(float(moments(m)["std"][0] / m.std()), 6)
1.0
"""

import functools

import healpy as hp
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def _maps(maps, name):
    """(B, Npix) float64 and nside of full-sky maps given as (Npix,) or (B, Npix)."""
    a = np.asarray(maps)
    if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = np.atleast_2d(a.astype(np.float64))
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must have shape (Npix,) or (B, Npix) with B >= 1, got {np.shape(maps)}")
    if not hp.isnpixok(a.shape[1]):
        raise ValueError(f"{name} must be full-sky maps (Npix = 12 * nside**2 cells), got {a.shape[1]} cells")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or inf values")
    return a, hp.npix2nside(a.shape[1])


def _check_nest(nest):
    if not isinstance(nest, (bool, np.bool_)):
        raise TypeError(f"nest must be True (NESTED) or False (RING), got {nest!r}")
    return bool(nest)


def band_powers(maps, nest=True):
    """Power of full-sky maps in octave bands of multipoles.

    Parameters
    ----------
    maps : array_like, shape (Npix,) or (B, Npix)
        Full-sky maps, NESTED (``nest=True``) or RING order.
    nest : bool

    Returns
    -------
    bands : ndarray of int, shape (n_bands, 2)
        ``[lo, hi)`` multipole ranges ``[4, 8), [8, 16), ..., [nside, 2 nside)``.
    powers : ndarray, shape (B, n_bands)
        ``sum_{lo <= l < hi} (2 l + 1) C_l / (4 pi)``: the variance each band contributes
        (``healpy.anafast`` of the RING map, no mask, no beam correction).

    Examples
    --------
    >>> import numpy as np
    >>> bands, p = band_powers(np.random.default_rng(0).normal(size=(2, 12 * 8**2)))
    >>> bands.tolist(), p.shape
    ([[4, 8], [8, 16]], (2, 2))
    """
    a, nside = _maps(maps, "maps")
    nest = _check_nest(nest)
    if nside < 4:
        raise ValueError(f"maps must have nside >= 4 (the first band is l = 4-8), got nside {nside}")
    los = 2 ** np.arange(2, int(np.log2(nside)) + 1)
    bands = np.stack([los, 2 * los], axis=1)
    ell = np.arange(2 * nside)
    powers = np.empty((a.shape[0], len(bands)))
    for b, m in enumerate(a):
        cl = hp.anafast(hp.reorder(m, n2r=True) if nest else m, lmax=2 * nside - 1, use_pixel_weights=False)
        weighted = (2 * ell + 1) * cl / (4 * np.pi)
        powers[b] = [weighted[lo:hi].sum() for lo, hi in bands]
    return bands, powers


def band_power_ratios(maps, reference, nest=True):
    """Band power of each map over the reference's (1 = the reference's power).

    Parameters
    ----------
    maps : array_like, shape (Npix,) or (B, Npix)
    reference : array_like, shape (Npix,) or (R, Npix)
        Same nside; with several maps, their mean band power is the reference.
    nest : bool
        Ordering of both (True: NESTED).

    Returns
    -------
    bands : ndarray of int, shape (n_bands, 2)
        As in :func:`band_powers`.
    ratios : ndarray, shape (B, n_bands)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=12 * 8**2)
    >>> band_power_ratios(3 * x, x)[1].round(6).tolist()
    [[9.0, 9.0]]
    """
    a, nside = _maps(maps, "maps")
    r, nside_ref = _maps(reference, "reference")
    if nside != nside_ref:
        raise ValueError(f"reference must have the maps' nside {nside}, got nside {nside_ref}")
    bands, p = band_powers(a, nest)
    return bands, p / band_powers(r, nest)[1].mean(axis=0)


def moments(maps):
    """One-point moments of each map (equal-area cells, so plain cell averages).

    Parameters
    ----------
    maps : array_like, shape (N,) or (B, N)
        Any cells (full sky or a region), any ordering.

    Returns
    -------
    dict of str to ndarray, each of shape (B,)
        ``"mean"``, ``"std"`` (population), ``"skewness"`` ``<d**3>/std**3`` and ``"kurtosis"``
        (excess) ``<d**4>/std**4 - 3``, with ``d = x - mean``.

    Examples
    --------
    >>> import numpy as np
    >>> m = moments(np.random.default_rng(0).normal(size=(2, 100000)))
    >>> sorted(m), m["skewness"].shape, bool(np.all(np.abs(m["kurtosis"]) < 0.1))
    (['kurtosis', 'mean', 'skewness', 'std'], (2,), True)
    """
    a = np.asarray(maps)
    if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"maps must hold real numbers, got dtype {a.dtype}")
    a = np.atleast_2d(a.astype(np.float64))
    if a.ndim != 2 or a.shape[1] < 2 or not np.isfinite(a).all():
        raise ValueError(f"maps must be finite, of shape (N,) or (B, N) with N >= 2, got shape {np.shape(maps)}")
    mean = a.mean(axis=1)
    d = a - mean[:, None]
    std = np.sqrt((d**2).mean(axis=1))
    safe = np.where(std > 0, std, 1.0)
    return {"mean": mean, "std": std, "skewness": (d**3).mean(axis=1) / safe**3,
            "kurtosis": (d**4).mean(axis=1) / safe**4 - 3.0}


@functools.lru_cache(maxsize=8)
def _mesh(nside):
    """The NESTED pixel mesh: per pixel its 4 corner vertex ids, per edge its 2 pixels and length.

    Returns (pixel_vertices (Npix, 4), edge_pixels (E, 2), edge_length (E,), n_vertices), with
    E = 24 nside**2 and n_vertices = 12 nside**2 + 2 (8 vertices where 3 pixels meet).
    """
    npix = 12 * nside**2
    corners = hp.boundaries(nside, np.arange(npix), step=1, nest=True)  # (Npix, 3, 4)
    xyz = np.transpose(corners, (0, 2, 1)).reshape(-1, 3)
    # Copies of one corner agree to rounding error; distinct corners are O(1/nside) apart.
    pairs = cKDTree(xyz).query_pairs(r=1e-9, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(xyz), len(xyz)))
    n_vertices, vid = connected_components(graph, directed=False)
    if n_vertices != npix + 2:
        raise RuntimeError(f"the HEALPix mesh at nside {nside} has {n_vertices} vertices, expected {npix + 2}")
    pixel_vertices = vid.reshape(npix, 4)
    a, b = pixel_vertices, np.roll(pixel_vertices, -1, axis=1)
    pairs = np.sort(np.stack([a, b], axis=-1).reshape(-1, 2), axis=1)
    _, first, eid = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    eid = eid.ravel()
    owners = np.repeat(np.arange(npix), 4)
    order = np.argsort(eid, kind="stable")
    edge_pixels = owners[order].reshape(-1, 2)  # every edge has exactly two pixels
    ends = xyz.reshape(npix, 4, 3)
    p0 = ends.reshape(-1, 3)[first]
    p1 = np.roll(ends, -1, axis=1).reshape(-1, 3)[first]
    length = np.arctan2(np.linalg.norm(np.cross(p0, p1), axis=1), np.sum(p0 * p1, axis=1))
    return pixel_vertices, edge_pixels, length, n_vertices


def minkowski_functionals(m, thresholds, nest=True):
    """The three Minkowski functionals of the excursion sets ``{m >= nu}`` of a full-sky map.

    The excursion set is the union of the closed HEALPix pixels at or above the threshold
    (pixels touching at a corner are connected, its complement's pixels only through edges).

    - ``v0``: area fraction (pixels have equal areas).
    - ``v1``: boundary length per unit area, ``L / (4 * 4 pi)`` (the conventional factor 1/4): ``L``
      is the total length (radians on the unit sphere) of the pixel edges between a pixel in the
      set and one outside. A staircase along the pixel edges: for a boundary of random
      direction it is about 4/pi longer than the smooth contour, the same factor for any map at
      one nside, so compare maps at one resolution.
    - ``v2``: Euler characteristic per unit area, ``chi / (4 pi)``, with ``chi = V - E + F``
      counted over the vertices, edges and pixels of the set (exact for the pixelised set: the
      number of connected components minus the number of holes; 2 for the whole sphere).

    For a Gaussian random field of unit variance, ``v0 = erfc(nu / sqrt 2) / 2``, ``v1``
    follows ``exp(-nu**2 / 2)`` and ``v2`` ``nu exp(-nu**2 / 2)`` (plus ``erfc(nu / sqrt 2) / (4 pi)``
    from the sphere's own Euler characteristic), which ``tests/test_diagnostics.py`` checks.

    Parameters
    ----------
    m : array_like, shape (Npix,)
        One full-sky map (NESTED for ``nest=True``, else RING).
    thresholds : array_like, shape (T,)
        Threshold values in the map's units (standardise the map for thresholds in units of sigma).
    nest : bool

    Returns
    -------
    v0, v1, v2 : ndarray, shape (T,) each

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros(12 * 4**2); x[0] = 1.0          # one NESTED pixel above 0.5
    >>> v0, v1, v2 = minkowski_functionals(x, [-1.0, 0.5, 2.0])
    >>> v0.tolist(), (v2 * 4 * np.pi).round(6).tolist()   # all / one pixel / nothing
    ([1.0, 0.005208333333333333, 0.0], [2.0, 1.0, 0.0])
    >>> bool(v1[0] == 0 and v1[1] > 0 and v1[2] == 0)
    True
    """
    a, nside = _maps(m, "m")
    if a.shape[0] != 1:
        raise ValueError(f"m must be one map of shape (Npix,), got shape {np.shape(m)}")
    nest = _check_nest(nest)
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size == 0 or not np.isfinite(thr).all():
        raise ValueError(f"thresholds must be a non-empty 1-D array of finite values, got shape {thr.shape}")
    x = a[0] if nest else hp.reorder(a[0], r2n=True)
    pixel_vertices, edge_pixels, length, n_vertices = _mesh(nside)
    v0, v1, v2 = (np.empty(thr.size) for _ in range(3))
    for i, nu in enumerate(thr):
        inside = x >= nu
        on_edge = inside[edge_pixels]
        touched = np.zeros(n_vertices, dtype=bool)
        touched[pixel_vertices[inside].ravel()] = True
        chi = np.count_nonzero(touched) - np.count_nonzero(on_edge.any(axis=1)) + np.count_nonzero(inside)
        v0[i] = inside.mean()
        v1[i] = length[on_edge[:, 0] != on_edge[:, 1]].sum() / (16 * np.pi)
        v2[i] = chi / (4 * np.pi)
    return v0, v1, v2
