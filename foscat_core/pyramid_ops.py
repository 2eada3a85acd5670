"""Moving maps between levels of the NESTED pyramid: ``down`` (max or mean) and ``up``."""

import math

import numpy as np

from foscat_core.backends import resolve_backend

from ._arrays import as_backend_array, check_cells_axis
from ._validation import check_cell_ids, check_nside
from .domain import Domain

DOWN_MODES = ("max", "mean")


class _DeviceCache:
    """Plans drop their device arrays when copied or pickled (keys are object ids)."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_device_arrays", None)
        return state


def down(x, nside, cell_ids=None, mode="max", backend=None):
    """Reduce a map to the next coarser level (nside // 2): max or mean over the children present.

    Parameters
    ----------
    x : array, shape (..., N)
        Floating-point map(s) on ``cell_ids`` at ``nside`` (cells on the last axis), e.g. (B, C, N).
    nside : int
        Resolution of ``x`` (>= 2).
    cell_ids : array_like of int, shape (N,), optional
        NESTED ids of ``x``'s cells, any order; ``None`` = full sky.
    mode : {"max", "mean"}
    backend : str or Backend, optional
        Default: the backend of ``x`` if it is a torch/TensorFlow tensor, else the default one.

    Returns
    -------
    y : array, shape (..., N_parent)
        Values on the parent cells, in ascending id order.
    parent_ids : ndarray of int64, shape (N_parent,)
        ``np.unique(cell_ids // 4)``.

    Examples
    --------
    >>> import numpy as np
    >>> y, ids = down(np.arange(48.0), 2, backend="numpy")
    >>> y[:3], ids[:3]
    (array([ 3.,  7., 11.]), array([0, 1, 2]))
    """
    bk = resolve_backend(backend, x)
    plan = DownPlan(nside, cell_ids)
    return plan(x, mode, bk), plan.parent_ids


class DownPlan(_DeviceCache):
    """One ``down`` step with its index work done once (the layers of a network reuse it).

    Parameters
    ----------
    nside : int
        Resolution of the fine maps (>= 2).
    cell_ids : array_like of int, shape (N,), optional
        NESTED ids of the fine maps; ``None`` = full sky.

    Attributes
    ----------
    parent_ids : ndarray of int64, shape (N_parent,)
        ``np.unique(cell_ids // 4)``, the cells of the output.
    """

    def __init__(self, nside, cell_ids=None):
        fine = Domain(nside, cell_ids)
        if fine.nside < 2:
            raise ValueError("nside must be >= 2 to go down a level, got 1")
        self.nside, self.n_cells = fine.nside, fine.n_cells
        parent = fine.parent()
        self.parent_ids = parent.cell_ids
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
            return xp.max(quads, axis=-1) if mode == "max" else xp.mean(quads, axis=-1)
        gather, mask = _on_device(self, bk, "gather", lambda: (bk.index_array(self.gather), bk.asarray(self.present)))
        quads = xp.reshape(bk.take(x, gather, axis=-1), lead + (n_parent, 4))
        if mode == "max":
            return xp.max(xp.where(mask, quads, -math.inf), axis=-1)
        dtype = bk.dtype_name(x)
        counts = _on_device(self, bk, "counts-" + dtype, lambda: bk.asarray(self.counts, dtype=dtype))
        return xp.sum(xp.where(mask, quads, 0.0), axis=-1) / counts


def up(x, nside, cell_ids=None, target_ids=None, backend=None):
    """Copy each coarse cell's value to its children at ``2 * nside``.

    Parameters
    ----------
    x : array, shape (..., N)
        Map(s) on ``cell_ids`` at the coarse ``nside``.
    nside : int
        Resolution of ``x`` (the coarse one).
    cell_ids : array_like of int, shape (N,), optional
        NESTED ids of ``x``'s cells; ``None`` = full sky.
    target_ids : array_like of int, shape (M,), optional
        NESTED ids at ``2 * nside`` to fill, any order (kept); each must have its parent in
        ``cell_ids``. ``None`` = the 4 children of every coarse cell, coarse cell by coarse cell.
    backend : str or Backend, optional

    Returns
    -------
    array, shape (..., M)

    Examples
    --------
    >>> import numpy as np
    >>> up(np.array([1.0, 2.0]), 1, cell_ids=[0, 5], target_ids=[21, 0, 3], backend="numpy")
    array([2., 1., 1.])
    """
    bk = resolve_backend(backend, x)
    return UpPlan(nside, cell_ids, target_ids)(x, bk)


class UpPlan(_DeviceCache):
    """One ``up`` step with its index work done once; arguments as :func:`up`.

    Attributes
    ----------
    target_ids : ndarray of int64, shape (M,)
        The cells of the output at ``2 * nside``.
    """

    def __init__(self, nside, cell_ids=None, target_ids=None):
        coarse = Domain(nside, cell_ids)
        fine_nside = check_nside(2 * coarse.nside, "2 * nside")
        self.nside, self.n_cells = coarse.nside, coarse.n_cells
        if target_ids is None:
            targets = coarse.children().cell_ids
        else:
            targets = check_cell_ids(target_ids, fine_nside, "target_ids")
        positions, present = coarse.locate(targets // 4)
        if not present.all():
            missing = targets[~present]
            raise ValueError(
                f"target_ids: {missing.size} id(s) at nside={fine_nside} have no parent in cell_ids, "
                f"e.g. {int(missing[0])} (parent {int(missing[0]) // 4})"
            )
        self.target_ids, self.positions = targets, positions

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
