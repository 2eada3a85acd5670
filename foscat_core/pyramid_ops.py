"""Moving maps between levels of the HEALPix pyramid: ``down`` (max or mean) and ``up``.

The work is done in NESTED ids; ``nest=False`` (RING) and DataArrays are translated at this edge."""

import math

import numpy as np

from foscat_core.backends import resolve_backend

from ._arrays import as_backend_array, check_cells_axis
from ._validation import check_nside
from .domain import Domain
from .ordering import as_domain, check_nest, nested_cell_ids, user_cell_ids
from .xarray_io import cells_last, is_dataarray, like, resolve_grid

DOWN_MODES = ("max", "mean")


class _DeviceCache:
    """Plans drop their device arrays when copied or pickled (keys are object ids)."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_device_arrays", None)
        return state


def down(x, nside=None, cell_ids=None, mode="max", backend=None, nest=None):
    """Reduce a map to the next coarser level (nside // 2): max or mean over the children present.

    Parameters
    ----------
    x : array or xarray.DataArray, shape (..., N)
        Floating-point map(s) on ``cell_ids`` at ``nside`` (cells on the last axis), e.g. (B, C, N).
        A DataArray in the xdggs convention (a ``cell_ids`` coordinate, see
        :mod:`foscat_core.xarray_io`) may have its cell dimension anywhere; ``nside``,
        ``cell_ids`` and ``nest`` are then read from it (any given must agree).
    nside : int
        Resolution of ``x`` (>= 2); optional for a DataArray.
    cell_ids : array_like of int, shape (N,), optional
        Ids of ``x``'s cells in the ``nest`` ordering, any order; ``None`` = full sky (in that
        ordering: a RING full sky has its cell axis in RING order).
    mode : {"max", "mean"}
    backend : str or Backend, optional
        Default: the backend of ``x`` if it is a torch/TensorFlow tensor, else the default one.
    nest : bool, optional
        healpy's meaning: True (the default) for NESTED ids, False for RING ids.

    Returns
    -------
    y : array or xarray.DataArray, shape (..., N_parent)
        Values on the parent cells, in ascending id order of the ``nest`` ordering. For a
        DataArray: a DataArray with the input's dims and other coordinates, its ``cell_ids``
        coordinate holding the parents at the new level (xdggs attributes updated).
    parent_ids : ndarray of int64, shape (N_parent,)
        The parents' ids in the ``nest`` ordering, ascending (``np.unique(cell_ids // 4)`` in NESTED).

    Examples
    --------
    >>> import numpy as np
    >>> y, ids = down(np.arange(48.0), 2, backend="numpy")
    >>> y[:3], ids[:3]
    (array([ 3.,  7., 11.]), array([0, 1, 2]))
    >>> y, ids = down(np.arange(48.0), 2, nest=False, backend="numpy")   # a RING map
    >>> ids[:3]
    array([0, 1, 2])
    """
    if is_dataarray(x):
        grid = resolve_grid(x, nside, cell_ids, nest)
        values, _ = cells_last(x, grid.cell_dim)
        plan = DownPlan(grid.nside, grid.cell_ids, nest=grid.nest)
        y = plan(values, mode, resolve_backend(backend, values))
        out = like(x, y, grid.cell_dim, cell_ids=plan.parent_ids, nside=plan.nside // 2, nest=grid.nest)
        return out, np.array(plan.parent_ids)
    bk = resolve_backend(backend, x)
    plan = DownPlan(_required_nside(nside), cell_ids, nest=True if nest is None else nest)
    return plan(x, mode, bk), np.array(plan.parent_ids)  # a writable array of the caller's own


def _required_nside(nside):
    if nside is None:
        raise TypeError("nside is required (it is optional only when x is an xarray.DataArray)")
    return nside


class DownPlan(_DeviceCache):
    """One ``down`` step with its index work done once (the layers of a network reuse it).

    Parameters
    ----------
    nside : int or Domain
        Resolution of the fine maps (>= 2), or their :class:`~foscat_core.Domain` (then
        ``cell_ids`` is ``None``; its ids are not checked again and its cached parent is used).
    cell_ids : array_like of int, shape (N,), optional
        Ids of the fine maps in the ``nest`` ordering; ``None`` = full sky.
    nest : bool
        True for NESTED ids, False for RING ids (inputs' cell axis in that order too).

    Attributes
    ----------
    parent_ids : ndarray of int64, shape (N_parent,)
        The cells of the output, ascending, in the ``nest`` ordering (``np.unique(cell_ids // 4)``
        in NESTED).
    domain, parent : Domain
        The fine cells and ``domain.parent()`` (the same object every user of the domain gets).
    """

    def __init__(self, nside, cell_ids=None, nest=True):
        self.nest = check_nest(nest)
        fine = as_domain(nside, cell_ids, self.nest)
        if fine.nside < 2:
            raise ValueError("nside must be >= 2 to go down a level, got 1")
        self.nside, self.n_cells = fine.nside, fine.n_cells
        self.domain = fine
        self.parent = parent = fine.parent()
        self.parent_ids = parent.cell_ids
        # RING parents come back in ascending RING order: a permutation of the NESTED parents.
        self.ring_order = None
        if not self.nest:
            ring = user_cell_ids(parent.nside, parent.cell_ids, False)
            self.ring_order = np.argsort(ring, kind="stable")
            self.parent_ids = ring[self.ring_order]
        self.contiguous = fine.groups_are_contiguous()
        if not self.contiguous:
            table, self.present = fine.child_table(parent)
            self.gather = table.reshape(-1)
            self.counts = self.present.sum(axis=1).astype(np.float64)

    def __call__(self, x, mode="max", backend=None):
        """``x`` (..., N) → (..., N_parent), the max or mean over the children present."""
        if mode not in DOWN_MODES:
            raise ValueError(f"mode must be one of {DOWN_MODES}, got {mode!r}")
        bk = resolve_backend(backend, x)
        xp = bk.xp
        x = as_backend_array(bk, x, "x")
        if not bk.dtype_name(x).startswith(("float", "bfloat")):
            # Integer maps would be truncated by a mean and cannot hold the -inf padding of a max.
            raise TypeError(f"x must be a floating-point map for down(), got dtype {bk.dtype_name(x)}; cast it first")
        check_cells_axis(x, self.n_cells, "x", f"len(cell_ids) at nside={self.nside}")
        lead = tuple(x.shape[:-1])
        n_parent = int(self.parent_ids.size)
        if self.contiguous:
            quads = xp.reshape(x, lead + (n_parent, 4))
            y = xp.max(quads, axis=-1) if mode == "max" else xp.mean(quads, axis=-1)
        else:
            gather, mask = _on_device(self, bk, "gather",
                                      lambda: (bk.index_array(self.gather), bk.asarray(self.present)))
            quads = xp.reshape(bk.take(x, gather, axis=-1), lead + (n_parent, 4))
            if mode == "max":
                y = xp.max(xp.where(mask, quads, -math.inf), axis=-1)
            else:
                dtype = bk.dtype_name(x)
                counts = _on_device(self, bk, "counts-" + dtype, lambda: bk.asarray(self.counts, dtype=dtype))
                y = xp.sum(xp.where(mask, quads, 0.0), axis=-1) / counts
        if self.ring_order is None:
            return y
        order = _on_device(self, bk, "ring_order", lambda: bk.index_array(self.ring_order))
        return bk.take(y, order, axis=-1)


def up(x, nside=None, cell_ids=None, target_ids=None, backend=None, nest=None):
    """Copy each coarse cell's value to its children at ``2 * nside``.

    Parameters
    ----------
    x : array or xarray.DataArray, shape (..., N)
        Map(s) on ``cell_ids`` at the coarse ``nside``. A DataArray (xdggs convention) gives
        ``nside``, ``cell_ids`` and ``nest`` itself, as in :func:`down`.
    nside : int
        Resolution of ``x`` (the coarse one); optional for a DataArray.
    cell_ids : array_like of int, shape (N,), optional
        Ids of ``x``'s cells in the ``nest`` ordering; ``None`` = full sky.
    target_ids : array_like of int, shape (M,), optional
        Ids at ``2 * nside`` to fill, in the ``nest`` ordering, any order (kept); each must have
        its parent in ``cell_ids``. ``None`` = every child of the coarse cells: NESTED, the 4
        children coarse cell by coarse cell; RING, in ascending RING id order.
    backend : str or Backend, optional
    nest : bool, optional
        healpy's meaning: True (the default) for NESTED ids, False for RING ids.

    Returns
    -------
    array or xarray.DataArray, shape (..., M)
        For a DataArray: the input's dims and other coordinates, ``cell_ids`` = the targets at
        the finer level (xdggs attributes updated).

    Examples
    --------
    >>> import numpy as np
    >>> up(np.array([1.0, 2.0]), 1, cell_ids=[0, 5], target_ids=[21, 0, 3], backend="numpy")
    array([2., 1., 1.])
    """
    if is_dataarray(x):
        grid = resolve_grid(x, nside, cell_ids, nest)
        values, _ = cells_last(x, grid.cell_dim)
        plan = UpPlan(grid.nside, grid.cell_ids, target_ids, nest=grid.nest)
        y = plan(values, resolve_backend(backend, values))
        return like(x, y, grid.cell_dim, cell_ids=plan.target_ids, nside=2 * plan.nside, nest=grid.nest)
    bk = resolve_backend(backend, x)
    return UpPlan(_required_nside(nside), cell_ids, target_ids, nest=True if nest is None else nest)(x, bk)


class UpPlan(_DeviceCache):
    """One ``up`` step with its index work done once; arguments as :func:`up` (``nest`` a bool),
    except that ``nside`` may be the coarse :class:`~foscat_core.Domain` (``cell_ids`` then
    ``None``) and ``target_ids`` the fine one: Domains are used as they are, not checked again.

    Attributes
    ----------
    target_ids : ndarray of int64, shape (M,)
        The cells of the output at ``2 * nside``, in the ``nest`` ordering.
    domain : Domain
        The coarse cells (the input's).
    """

    def __init__(self, nside, cell_ids=None, target_ids=None, nest=True):
        self.nest = check_nest(nest)
        coarse = as_domain(nside, cell_ids, self.nest)
        fine_nside = check_nside(2 * coarse.nside, "2 * nside")
        self.nside, self.n_cells, self.domain = coarse.nside, coarse.n_cells, coarse
        if target_ids is None:
            targets = coarse.children().cell_ids
            if not self.nest:
                targets = targets[np.argsort(user_cell_ids(fine_nside, targets, False), kind="stable")]
        elif isinstance(target_ids, Domain):
            if target_ids.nside != fine_nside:
                raise ValueError(f"target_ids: a Domain at nside {fine_nside} was expected, got nside {target_ids.nside}")
            targets = target_ids.cell_ids
        else:
            targets = nested_cell_ids(fine_nside, target_ids, self.nest, "target_ids")
        positions, present = coarse.locate(targets // 4)
        if not present.all():
            missing = targets[~present]
            example, parent = user_cell_ids(fine_nside, missing[:1], self.nest)[0], missing[0] // 4
            raise ValueError(
                f"target_ids: {missing.size} id(s) at nside={fine_nside} have no parent in cell_ids, "
                f"e.g. {int(example)} (parent {int(user_cell_ids(coarse.nside, [parent], self.nest)[0])})"
            )
        self.target_ids, self.positions = user_cell_ids(fine_nside, targets, self.nest), positions

    def __call__(self, x, backend=None):
        """``x`` (..., N) → (..., M): each target cell takes its parent's value."""
        bk = resolve_backend(backend, x)
        x = as_backend_array(bk, x, "x")
        check_cells_axis(x, self.n_cells, "x", f"len(cell_ids) at nside={self.nside}")
        positions = _on_device(self, bk, "positions", lambda: bk.index_array(self.positions))
        return bk.take(x, positions, axis=-1)


def _on_device(plan, bk, what, make):
    """``make()``'s backend arrays, built once per plan, backend (device) and ``what``: the index
    tables go to the device once, not at every call of a network layer. Backends build host data
    as eager arrays (TensorFlow too, even while tracing), so the cache never holds graph tensors."""
    cache = plan.__dict__.setdefault("_device_arrays", {})
    key = (id(bk), what)
    if key not in cache:
        cache[key] = make()
    return cache[key]


ud_grade_2 = down
up_grade = up
