"""The scattering operator's edge: users' maps (NumPy, tensors, xarray DataArrays; NESTED or RING;
full sky or regional) become the ``(B, N)`` backend maps, host mask and NESTED domain the scale
loop works on.

A full sky in any ordering or cell order is gathered into NESTED order (statistics are averages
over cells, so the order of the cell axis does not change them; the full-sky path is the fast one);
a regional map keeps its order and its ids become NESTED ids.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from foscat_core._arrays import as_backend_array
from foscat_core._validation import check_nside, check_positive_int
from foscat_core.ordering import nested_cell_ids
from foscat_core.xarray_io import cells_last, grid_of, is_dataarray, resolve_grid

from .settings import hash_array

FILL_HINT = ("give those cells any finite value and weight 0 with mask= (e.g. mask=np.isfinite(x)), or fill them "
             "first (Synthesis.run(..., grd_mask=...) with a masked loss)")


@dataclass(frozen=True)
class CellLayout:
    """A resolved cell layout (not the core :class:`~foscat_core.Domain`: it adds the user's ordering,
    the gather that reaches NESTED order and the hash the statistics record).

    Attributes
    ----------
    nside : int
    cell_ids : ndarray of int64, shape (N,), or None
        NESTED ids for the core, in the order of the (gathered) cell axis; None = NESTED full sky.
    gather : ndarray of int64, shape (N,), or None
        Positions that put the user's cell axis in NESTED order (full skies given otherwise).
    canonical : ndarray of int64, shape (N,), or None
        Positions that sort a regional cell axis by NESTED id (to hash masks order-free).
    n_cells : int
    cells_hash : str
    nest : bool
    user_ids : ndarray of int64, shape (N,), or None
        The ids as the user gave them (None = full sky in natural order).
    native_gather : native int array, shape (N,), or None
        ``gather`` on the operator's backend (see :func:`with_backend`).
    pyramid_key : tuple
        ``(nside, NESTED ids as bytes, or None for the full sky)``: the key of the domain's
        per-scale data, made once here, so that a traced call (``torch.compile``, which holds
        NumPy arrays as graph tensors without values) looks the data up without reading ids.
    """

    nside: int
    cell_ids: object
    gather: object
    canonical: object
    n_cells: int
    cells_hash: str
    nest: bool
    user_ids: object
    native_gather: object = None
    pyramid_key: tuple = None

    def __post_init__(self):
        if self.pyramid_key is None:
            ids = None if self.cell_ids is None else np.asarray(self.cell_ids, dtype=np.int64).tobytes()
            object.__setattr__(self, "pyramid_key", (self.nside, ids))


def build_domain(nside, user_ids, nest):
    """The :class:`CellLayout` of ``user_ids`` (in the ``nest`` ordering; None = full sky) at ``nside``."""
    npix = 12 * nside * nside
    if user_ids is None:
        if nest:
            return CellLayout(nside, None, None, None, npix, "full", True, None)
        import healpy as hp

        gather = np.asarray(hp.nest2ring(nside, np.arange(npix, dtype=np.int64)), dtype=np.int64)
        return CellLayout(nside, None, gather, None, npix, "full", False, None)
    nested = nested_cell_ids(nside, user_ids, nest)
    order = np.argsort(nested, kind="stable")
    user = np.asarray(user_ids, dtype=np.int64)
    if nested.size == npix:  # every cell: gather into NESTED order, the full-sky path
        natural = bool(np.all(order == np.arange(npix)))
        return CellLayout(nside, None, None if natural else order, None, npix, "full", nest, user)
    return CellLayout(nside, nested, None, order, int(nested.size), hash_array(nested[order]), nest, user)


def with_backend(domain, bk):
    """``domain`` with its ``gather`` also on ``bk`` (built once, when the domain is first resolved,
    so that no call, traced or not, builds or caches it)."""
    if domain.gather is None:
        return domain
    return replace(domain, native_gather=bk.index_array(domain.gather))


def gather(bk, v, domain):
    """A native (B, N) map put in NESTED order when ``domain`` (from :func:`with_backend`) asks for it."""
    return v if domain.native_gather is None else bk.take(v, domain.native_gather, axis=1)


@dataclass(frozen=True)
class EvalInputs:
    """The checked inputs of one ``eval`` call.

    Attributes
    ----------
    x : native array, shape (B, N)
        Finite maps, in NESTED cell order of ``domain`` (gathered).
    y : native array, shape (B, N), or None
        The second field of cross statistics, like ``x``.
    domain : CellLayout
    n_scales : int
    mask : ndarray of float64, shape (M, N), or None
        Host weights in ``x``'s (gathered) cell order.
    mask_hash : str or None
        Hash of the mask in sorted NESTED cell order (order-free).
    norm : {None, "self", "auto"}
    """

    x: object
    y: object
    domain: CellLayout
    n_scales: int
    mask: object
    mask_hash: object
    norm: object


def check_norm(norm, norms):
    if norm not in norms:
        raise ValueError(f"norm must be one of None, 'self', 'auto', got {norm!r}")
    return norm


def check_n_scales(jmax, default, allowed):
    """The number of scales: ``default`` for ``Jmax=None``, else ``Jmax`` checked against ``allowed``."""
    if jmax is None:
        return default
    n_scales = check_positive_int(jmax, "Jmax")
    if n_scales > allowed:
        raise ValueError(f"Jmax={n_scales} exceeds the {allowed} scales this domain allows")
    return n_scales


def field_maps(bk, x, y, domain, dtype):
    """``(x, y)`` as native (B, N) maps of ``dtype`` in NESTED cell order of ``domain`` (y may be
    None; a y of another shape than x is a ``ValueError``)."""
    n = int(x.shape[1])
    x = gather(bk, x, domain)
    if y is None:
        return x, None
    y = maps(bk, companion_values(y, "y", domain), "y", dtype)
    if tuple(y.shape) != (int(x.shape[0]), n):
        raise ValueError(f"y must have the shape of x {(int(x.shape[0]), n)}, got {tuple(y.shape)}")
    return x, gather(bk, y, domain)


def mask_weights(bk, mask, domain, n):
    """``(host mask (M, N) in gathered cell order, its order-free hash)``, or ``(None, None)``."""
    if mask is None:
        return None, None
    m = host_mask(bk, companion_values(mask, "mask", domain), n)
    if domain.gather is not None:
        m = m[:, domain.gather]
    return m, hash_array(m if domain.canonical is None else m[:, domain.canonical])


def dataarray_values(da, grid):
    """``(values (B, N) host array, grid)`` of a DataArray: the cell dim moved last, the other dims
    flattened (C order) into the batch."""
    values, _ = cells_last(da, grid.cell_dim)
    return values.reshape(-1, values.shape[-1]) if values.ndim != 1 else values[None, :]


def read_grid(x, nside, cell_ids, nest):
    """``(x as host values or as given, nside, cell_ids, nest, grid or None)`` for the map ``x``."""
    if not is_dataarray(x):
        return x, nside, cell_ids, nest, None
    grid = resolve_grid(x, nside=nside, cell_ids=cell_ids, nest=nest, name="x")
    return dataarray_values(x, grid), grid.nside, grid.cell_ids, grid.nest, grid


def companion_values(v, name, domain):
    """A DataArray ``y`` or ``mask`` as host values, after checking its grid is ``domain``'s."""
    if not is_dataarray(v):
        return v
    grid = grid_of(v, name)
    ids = np.arange(12 * domain.nside ** 2, dtype=np.int64) if domain.user_ids is None else domain.user_ids
    if grid.nside != domain.nside or grid.nest != domain.nest or not np.array_equal(grid.cell_ids, ids):
        raise ValueError(f"{name}'s grid (nside {grid.nside}, nest={grid.nest}, {grid.cell_ids.size} cells) must be "
                         f"x's (nside {domain.nside}, nest={domain.nest}, {ids.size} cells, the same ids in the "
                         "same order)")
    return dataarray_values(v, grid)


def maps(bk, v, name, dtype):
    """``v`` as a native ``(B, N)`` array of ``dtype`` (real, B >= 1), checked finite (see
    :func:`check_finite`; use the returned array, which carries a traced check)."""
    v = as_backend_array(bk, v, name, dtype)
    if len(v.shape) == 1:
        v = bk.xp.reshape(v, (1, int(v.shape[0])))
    elif len(v.shape) != 2:
        raise ValueError(f"{name} must have shape (N,) or (B, N), got shape {tuple(v.shape)}")
    if v.shape[0] == 0:  # statistics are averages per map: none of zero maps
        raise ValueError(f"{name} must hold at least one map, got shape {tuple(v.shape)}")
    return check_finite(bk, v, name)


def check_finite(bk, v, name):
    """``v``, or a ValueError counting the NaN/inf cells of a native ``(B, N)`` map.

    While a graph is traced (``jax.jit``, ``tf.function``, ``torch.compile``) the values are not
    known yet: the check becomes part of the graph (:meth:`Backend.assert_finite`) and fails when
    it runs, with the framework's error carrying this message; the returned ``v`` carries it.
    """
    if bk.is_traced(v):
        return bk.assert_finite(v, f"{name} has missing (NaN or infinite) cells; scattering statistics need finite "
                                   f"maps: {FILL_HINT}")
    try:
        return bk.assert_finite(v, name)
    except ValueError:
        pass
    bad = ~np.isfinite(bk.to_numpy(v))
    rows = int(np.count_nonzero(bad.any(axis=1)))
    raise ValueError(f"{name} has {int(bad.sum())} missing (NaN or infinite) cells of {bad.size} (in {rows} of "
                     f"{bad.shape[0]} maps); scattering statistics need finite maps: {FILL_HINT}")


def host_mask(bk, mask, n):
    """A mask as a host float64 ``(M, N)`` array of finite non-negative weights, rows with a positive sum."""
    m = bk.to_numpy(mask) if bk.is_native(mask) else np.asarray(mask)
    if m.dtype == bool:
        m = m.astype(np.float64)
    if not np.issubdtype(m.dtype, np.number) or np.iscomplexobj(m):
        raise TypeError(f"mask must hold real numbers, got dtype {m.dtype}")
    m = m.astype(np.float64)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] != n:
        raise ValueError(f"mask must have shape (M, {n}) or ({n},) to match x, got shape {np.shape(mask)}")
    finite = np.isfinite(m)
    if not finite.all():
        raise ValueError(f"mask has {int((~finite).sum())} NaN or infinite weights: a mask holds finite "
                         "non-negative weights (0 where a cell must not count)")
    if np.any(m < 0):
        raise ValueError("mask must hold finite non-negative weights, got negative values")
    if np.any(m.sum(axis=1) <= 0):
        raise ValueError("mask: every row needs a positive sum (a row of zeros selects no cell)")
    return m


def full_sky_nside(n, nside):
    """The nside of a full-sky map of ``n`` cells (``nside`` given or inferred)."""
    if nside is None:
        ns = math.isqrt(n // 12) if n >= 12 else 0  # plain Python: no NumPy on a traced call's path
        if 12 * ns * ns != n or ns < 1 or ns & (ns - 1):
            raise ValueError(f"x: {n} cells is not a full HEALPix sky (12 * nside**2 with nside a power "
                             "of two); pass cell_ids and nside for a regional map")
        return ns
    nside = check_nside(nside)
    if n != 12 * nside * nside:
        raise ValueError(f"x must have 12 * nside**2 = {12 * nside * nside} cells on its last axis for a full "
                         f"sky at nside={nside}, got {n}; pass cell_ids for a regional map")
    return nside


def check_ids_shape(cell_ids, n):
    ids = np.asarray(cell_ids)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ValueError(f"cell_ids must be 1-D with one id per cell of x ({n}), got shape {ids.shape}")

