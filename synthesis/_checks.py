"""Argument checks of :meth:`Synthesis.run`: clear errors naming the argument, never a silent reshape."""

import numbers

import numpy as np

from foscat_core.backends import backend_of
from foscat_core.xarray_io import cells_last, grid_of, is_dataarray, like


def host_array(x, name, allow_bool=False):
    """``x`` (NumPy data, list, or a tensor of any backend) as a NumPy array, checked real and finite
    (booleans only with ``allow_bool``)."""
    owner = backend_of(x)
    if owner is not None:
        x = owner.to_numpy(x)
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}: {err}") from err
    real = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    if not (real or (allow_bool and arr.dtype == bool)):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} must hold at least one value, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must be finite, got {bad} NaN or infinite value(s)")
    return arr


def gradient_mask(mask, name="grd_mask"):
    """``mask`` (0/1 numbers or booleans, True = free) as a finite float64 NumPy array."""
    return host_array(mask, name, allow_bool=True).astype(np.float64)


def positive_float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def free_entries(shape, grd_mask, idx_grd):
    """Flat indices of the entries L-BFGS-B moves, and the gradient weight of each.

    ``grd_mask`` (shape of ``in_x``) weights the gradient, entries where it is 0 never move;
    ``idx_grd`` (1-D ints) restricts the moving entries to those cells of the last axis.
    """
    size = int(np.prod(shape))
    weight = np.ones(size, dtype=np.float64)
    if grd_mask is not None:
        mask = gradient_mask(grd_mask)
        if mask.shape != tuple(shape):
            raise ValueError(f"grd_mask must have the shape of in_x {tuple(shape)}, got {mask.shape}")
        weight = mask.ravel()
    moving = weight != 0.0
    if idx_grd is not None:
        idx = host_array(idx_grd, "idx_grd")
        if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
            raise TypeError(f"idx_grd must be a 1-D array of integer cell indices, got dtype {idx.dtype}, shape {idx.shape}")
        n_cells = int(shape[-1]) if len(shape) else 1
        if idx.min() < -n_cells or idx.max() >= n_cells:
            raise ValueError(f"idx_grd must index the last axis of in_x (length {n_cells}), "
                             f"got values in [{int(idx.min())}, {int(idx.max())}]")
        on_cells = np.zeros(n_cells, dtype=bool)
        on_cells[idx] = True
        moving &= np.broadcast_to(on_cells, tuple(shape) if len(shape) else (1,)).ravel()
    free = np.flatnonzero(moving)
    if free.size == 0:
        raise ValueError("grd_mask / idx_grd leave no entry of in_x free to move")
    return free, weight[free]


def dataarray_start(in_x, grd_mask):
    """A DataArray start as NumPy with its cell dim last, and how to wrap the answer back.

    Returns ``(x0, grd_mask, wrap)``: ``wrap(result)`` gives a DataArray with ``in_x``'s dims,
    coordinates and attributes (``None`` when ``in_x`` is no DataArray). ``grd_mask`` given as a
    DataArray is aligned by dim names, as NumPy it follows ``in_x``'s dims.
    """
    if not is_dataarray(in_x):
        if is_dataarray(grd_mask):
            raise TypeError("grd_mask is a DataArray but in_x is not: pass both as DataArrays or both as arrays")
        return in_x, grd_mask, None
    cell_dim = grid_of(in_x, "in_x").cell_dim
    x0, dims = cells_last(in_x, cell_dim)
    if is_dataarray(grd_mask):
        if set(grd_mask.dims) != set(in_x.dims):
            raise ValueError(f"grd_mask must have in_x's dims {in_x.dims}, got {grd_mask.dims}")
        grd_mask = np.asarray(grd_mask.transpose(*dims).values)
    elif grd_mask is not None:
        grd_mask = gradient_mask(grd_mask)
        if grd_mask.shape != tuple(in_x.shape):
            raise ValueError(f"grd_mask must have the shape of in_x {tuple(in_x.shape)} (dims {in_x.dims}), "
                             f"got {grd_mask.shape}")
        grd_mask = np.moveaxis(grd_mask, in_x.dims.index(cell_dim), -1)
    return x0, grd_mask, lambda result: like(in_x, result, cell_dim, dims=dims)
