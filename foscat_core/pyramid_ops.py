"""Moving maps between levels of the NESTED pyramid: ``down`` (max or mean) and ``up``."""

import math

import numpy as np

from foscat_core.backends import resolve_backend

from ._arrays import as_backend_array, check_cells_axis
from ._validation import check_cell_ids, check_nside
from .domain import Domain

DOWN_MODES = ("max", "mean")


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
    if mode not in DOWN_MODES:
        raise ValueError(f"mode must be one of {DOWN_MODES}, got {mode!r}")
    bk = resolve_backend(backend, x)
    xp = bk.xp
    fine = Domain(nside, cell_ids)
    if fine.nside < 2:
        raise ValueError("nside must be >= 2 to go down a level, got 1")
    x = as_backend_array(bk, x, "x")
    if not bk.dtype_name(x).startswith(("float", "bfloat")):
        # Integer maps would be truncated by a mean and cannot hold the -inf padding of a max.
        raise TypeError(f"x must be a floating-point map for down(), got dtype {bk.dtype_name(x)}; cast it first")
    check_cells_axis(x, fine.n_cells, "x", f"len(cell_ids) at nside={fine.nside}")
    parent = fine.parent()
    lead = tuple(x.shape[:-1])
    if fine.groups_are_contiguous():
        quads = xp.reshape(x, lead + (parent.n_cells, 4))
        y = xp.max(quads, axis=-1) if mode == "max" else xp.mean(quads, axis=-1)
        return y, parent.cell_ids
    table, present = fine.child_table(parent)
    quads = xp.reshape(bk.take(x, bk.index_array(table.reshape(-1)), axis=-1), lead + (parent.n_cells, 4))
    mask = bk.asarray(present)
    if mode == "max":
        y = xp.max(xp.where(mask, quads, -math.inf), axis=-1)
    else:
        counts = bk.asarray(present.sum(axis=1).astype(np.float64), dtype=bk.dtype_name(x))
        y = xp.sum(xp.where(mask, quads, 0.0), axis=-1) / counts
    return y, parent.cell_ids


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
    coarse = Domain(nside, cell_ids)
    fine_nside = check_nside(2 * coarse.nside, "2 * nside")
    x = as_backend_array(bk, x, "x")
    check_cells_axis(x, coarse.n_cells, "x", f"len(cell_ids) at nside={coarse.nside}")
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
    return bk.take(x, bk.index_array(positions), axis=-1)


ud_grade_2 = down
up_grade = up
