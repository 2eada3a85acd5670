"""xarray DataArrays at the edge: read the HEALPix grid of a map and wrap answers back.

A map in the xdggs convention has a ``cell_ids`` coordinate on its cell dimension and the grid
described by attributes: ``grid_name="healpix"``, ``level`` (nside = 2**level) or ``nside``,
``indexing_scheme`` ``"nested"`` or ``"ring"``. xdggs writes them on the ``cell_ids`` coordinate
(and keeps them in its index once the map is decoded); they may also sit on the DataArray.

This module imports xarray only inside the functions that build DataArrays, and only tests
``isinstance`` against it when the user has already imported it, so ``import foscat_core``
imports none of it.
"""

import numbers
import sys
from dataclasses import dataclass

import numpy as np

from ._arrays import to_host
from ._validation import check_cell_ids
from .ordering import check_nest, nested_cell_ids

CELL_COORD = "cell_ids"
GRID_KEYS = ("grid_name", "level", "nside", "depth", "order", "indexing_scheme", "nest")
SCHEMES = {"nested": True, "ring": False}


def is_dataarray(obj):
    """True for an ``xarray.DataArray``; never imports xarray itself.

    >>> import numpy as np
    >>> is_dataarray(np.zeros(3))
    False
    """
    xr = sys.modules.get("xarray")
    return xr is not None and isinstance(obj, xr.DataArray)


@dataclass(frozen=True, eq=False)
class Grid:
    """The HEALPix grid of a DataArray, as its user gave it.

    Attributes
    ----------
    nside : int
    cell_ids : ndarray of int64, shape (N,)
        The ``cell_ids`` coordinate's values, in the user's ordering and order.
    nest : bool
        healpy's meaning: True for NESTED ids, False for RING ids.
    cell_dim : str
        The dimension carrying ``cell_ids``.
    """

    nside: int
    cell_ids: np.ndarray
    nest: bool
    cell_dim: str

    @property
    def level(self):
        return self.nside.bit_length() - 1

    @property
    def nested_ids(self):
        """NESTED ids in the user's order, shape (N,): what the core takes as ``cell_ids``."""
        return nested_cell_ids(self.nside, self.cell_ids, self.nest)


def grid_of(da, name="x"):
    """Read the HEALPix grid of a DataArray in the xdggs convention.

    The grid attributes are looked up, in this order, in an xdggs index on ``cell_ids`` (a map
    decoded with ``xdggs.decode``), on the ``cell_ids`` coordinate, then on the DataArray.
    ``indexing_scheme`` defaults to ``"nested"`` when absent, as in xdggs; ``level`` may be given
    as ``nside`` (or xdggs's aliases ``depth``/``order``).

    Parameters
    ----------
    da : xarray.DataArray
        A map with a 1-D ``cell_ids`` coordinate on its cell dimension.
    name : str
        The argument's name, for error messages.

    Returns
    -------
    Grid

    Raises
    ------
    ValueError
        No ``cell_ids`` coordinate, a grid other than healpix, a missing or invalid level,
        an indexing scheme other than nested/ring (e.g. ``"zuniq"``), ids out of range.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> attrs = {"grid_name": "healpix", "level": 1, "indexing_scheme": "ring"}
    >>> da = xr.DataArray(np.zeros((2, 3)), dims=("time", "cells"),
    ...                   coords={"cell_ids": ("cells", [0, 4, 13], attrs)})
    >>> g = grid_of(da)
    >>> g.nside, g.nest, g.cell_dim, g.nested_ids
    (2, False, 'cells', array([3, 2, 0]))
    """
    if not is_dataarray(da):
        raise TypeError(f"{name} must be an xarray.DataArray, got {type(da).__name__}")
    if CELL_COORD not in da.coords:
        raise ValueError(
            f"{name} has no '{CELL_COORD}' coordinate: the cell dimension of a HEALPix DataArray is the one "
            f"carrying a '{CELL_COORD}' coordinate (xdggs convention); got coordinates {list(da.coords)}"
        )
    coord = da.coords[CELL_COORD]
    if coord.ndim != 1 or coord.dims[0] not in da.dims:
        raise ValueError(f"{name}.{CELL_COORD} must be a 1-D coordinate along one of {da.dims}, got dims {coord.dims}")
    attrs = _grid_attrs(da)
    where = f"{name}'s grid attributes"
    grid_name = attrs.get("grid_name")
    if grid_name != "healpix":
        raise ValueError(f"{where}: grid_name must be 'healpix', got {grid_name!r}")
    scheme = attrs.get("indexing_scheme")
    if scheme is None and "nest" in attrs:
        scheme = "nested" if attrs["nest"] else "ring"
    scheme = "nested" if scheme is None else scheme
    if scheme not in SCHEMES:
        raise ValueError(
            f"{where}: indexing_scheme must be 'nested' or 'ring', got {scheme!r} "
            "(convert uniq ids to a nested level first)"
        )
    nside = _nside_of(attrs, where)
    cell_ids = check_cell_ids(np.asarray(coord.values), nside, f"{name}.{CELL_COORD}")
    return Grid(nside=nside, cell_ids=cell_ids, nest=SCHEMES[scheme], cell_dim=coord.dims[0])


def resolve_grid(da, nside=None, cell_ids=None, nest=None, name="x"):
    """:func:`grid_of` ``da``, checked against the ``nside``/``cell_ids``/``nest`` a caller also gave.

    Arguments left ``None`` are read from the DataArray; one that is given must agree with it
    (``cell_ids``: the same cells in the same order, in the ``nest`` ordering).

    Returns
    -------
    Grid

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros(3), dims="cells", coords={"cell_ids": ("cells", [0, 4, 13],
    ...                   {"grid_name": "healpix", "level": 1, "indexing_scheme": "ring"})})
    >>> resolve_grid(da, nside=2).nest
    False
    >>> resolve_grid(da, nest=True)
    Traceback (most recent call last):
    ...
    ValueError: nest=True conflicts with x's grid (indexing_scheme 'ring', i.e. nest=False)
    """
    grid = grid_of(da, name)
    if nside is not None and nside != grid.nside:
        raise ValueError(f"nside={nside!r} conflicts with {name}'s grid (level {grid.level}, i.e. nside={grid.nside})")
    if nest is not None and check_nest(nest) != grid.nest:
        raise ValueError(f"nest={nest!r} conflicts with {name}'s grid "
                         f"(indexing_scheme {'nested' if grid.nest else 'ring'!r}, i.e. nest={grid.nest})")
    if cell_ids is not None:
        given = nested_cell_ids(grid.nside, cell_ids, grid.nest)
        if given.shape != grid.cell_ids.shape or not np.array_equal(given, grid.nested_ids):
            raise ValueError(f"cell_ids conflicts with {name}'s '{CELL_COORD}' coordinate (not the same cells in "
                             "the same order); leave cell_ids out to use the DataArray's")
    return grid


def _grid_attrs(da):
    index = da.xindexes.get(CELL_COORD)
    info = getattr(index, "grid_info", None)
    if info is not None and hasattr(info, "to_dict"):
        return info.to_dict()
    coord_attrs = da.coords[CELL_COORD].attrs
    return coord_attrs if any(k in coord_attrs for k in GRID_KEYS) else da.attrs


def _nside_of(attrs, where):
    level = next((attrs[k] for k in ("level", "depth", "order") if attrs.get(k) is not None), None)
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, numbers.Integral) or not 0 <= level <= 29:
            raise ValueError(f"{where}: level must be an integer in [0, 29], got {level!r}")
        return 2 ** int(level)
    nside = attrs.get("nside")
    if nside is None:
        raise ValueError(f"{where}: need 'level' (nside = 2**level) or 'nside', got attributes {dict(attrs)}")
    if isinstance(nside, bool) or not isinstance(nside, numbers.Integral) or nside < 1 or nside & (nside - 1):
        raise ValueError(f"{where}: nside must be a power of two, got {nside!r}")
    return int(nside)


def grid_attrs(nside, nest):
    """The xdggs attributes of a HEALPix grid.

    >>> grid_attrs(8, nest=False)
    {'grid_name': 'healpix', 'level': 3, 'indexing_scheme': 'ring'}
    """
    return {"grid_name": "healpix", "level": int(nside).bit_length() - 1, "indexing_scheme": "nested" if nest else "ring"}


def cells_last(da, cell_dim):
    """The values of ``da`` with ``cell_dim`` moved last, as NumPy, and their dims.

    Loads the data: for in-memory use only (read dask-backed maps batch by batch with ``isel``).

    Returns
    -------
    values : ndarray, shape (..., N)
    dims : tuple of str
        The dims of ``values``: ``da``'s dims in their order, ``cell_dim`` moved last.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((3, 2)), dims=("cells", "time"))
    >>> values, dims = cells_last(da, "cells")
    >>> values.shape, dims
    ((2, 3), ('time', 'cells'))
    """
    dims = tuple(d for d in da.dims if d != cell_dim) + (cell_dim,)
    return np.asarray(da.transpose(*dims).values), dims


def cell_coordinate(nside, cell_ids, nest, cell_dim="cells"):
    """A ``cell_ids`` coordinate (an ``xarray.Variable`` along ``cell_dim``) with xdggs attributes.

    Examples
    --------
    >>> c = cell_coordinate(2, [5, 1], nest=True)
    >>> c.dims, c.values, c.attrs["level"]
    (('cells',), array([5, 1]), 1)
    """
    import xarray as xr

    ids = np.asarray(cell_ids, dtype=np.int64)
    return xr.Variable((cell_dim,), ids, grid_attrs(nside, nest))


def like(template, values, cell_dim, cell_ids=None, nside=None, nest=None, dims=None, name=None):
    """Wrap a NumPy answer into a DataArray shaped like ``template``.

    Other coordinates and attributes of ``template`` are kept where they still fit (a coordinate
    whose dimension changed size is dropped, e.g. channel labels after a ``conv``). When
    ``cell_ids`` is given the cells changed (``down``, ``up``): the ``cell_ids`` coordinate is
    replaced with xdggs attributes for ``nside``/``nest`` and other coordinates along the cell
    dimension are dropped. A template decoded by xdggs gives an answer decoded likewise.

    Parameters
    ----------
    template : xarray.DataArray
        The input the answer is for.
    values : array, shape matching ``dims``
        NumPy data or a framework tensor (brought to NumPy).
    cell_dim : str
        The template's cell dimension.
    cell_ids : array_like of int, shape (M,), optional
        The new cells in the user's ordering (``nest``); ``None`` = the template's cells.
    nside, nest : optional
        Grid of the new cells; default: the template's.
    dims : sequence of str, optional
        Dims of ``values``; default: the template's dims with ``cell_dim`` last (as
        :func:`cells_last` gives). The answer has the template's dim order; dims the template
        lacks come first.
    name : str, optional
        Default: the template's name.

    Returns
    -------
    xarray.DataArray

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> attrs = {"grid_name": "healpix", "level": 1, "indexing_scheme": "nested"}
    >>> da = xr.DataArray(np.ones((48, 2)), dims=("cells", "time"),
    ...                   coords={"cell_ids": ("cells", np.arange(48), attrs), "time": [10, 20]})
    >>> out = like(da, np.ones((2, 12)), "cells", cell_ids=np.arange(12), nside=1)
    >>> out.dims, out.cell_ids.attrs["level"], out.time.values.tolist()
    (('cells', 'time'), 0, [10, 20])
    """
    import xarray as xr

    values = to_host(values)
    dims = tuple(dims) if dims is not None else tuple(d for d in template.dims if d != cell_dim) + (cell_dim,)
    if len(dims) != values.ndim:
        raise ValueError(f"values of shape {values.shape} do not match dims {dims}")
    out = xr.DataArray(values, dims=dims, name=template.name if name is None else name, attrs=dict(template.attrs))
    cells_changed = cell_ids is not None
    drop = [k for k, c in template.coords.items()
            if any(d not in out.sizes or out.sizes[d] != template.sizes[d] for d in c.dims)
            or (cells_changed and cell_dim in c.dims)]
    out = out.assign_coords(template.coords.to_dataset().drop_vars(drop).coords)
    if cells_changed:
        old = grid_of(template, "template") if (nside is None or nest is None) else None
        nside = old.nside if nside is None else nside
        nest = old.nest if nest is None else nest
        out = out.assign_coords({CELL_COORD: cell_coordinate(nside, cell_ids, nest, cell_dim)})
        if any(k in out.attrs for k in GRID_KEYS):
            out.attrs.update(grid_attrs(nside, nest))
            for key in ("nside", "depth", "order", "nest"):
                out.attrs.pop(key, None)
        if getattr(template.xindexes.get(CELL_COORD), "grid_info", None) is not None:
            out = out.dggs.decode()  # the template was decoded by xdggs: decode the answer too
    shared = [d for d in template.dims if d in dims]
    return out.transpose(*[d for d in dims if d not in template.dims], *shared)
