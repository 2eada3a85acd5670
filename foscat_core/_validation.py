"""Argument checks shared by the geometry, stencil and op modules.

Every check raises a ``ValueError`` or ``TypeError`` that names the argument, says what was
expected and shows what came, so a user sees the mistake at the call that made it.
"""

import numbers

import numpy as np

from foscat_core.backends.dtypes import check_dtype_name  # noqa: F401 - the one dtype parser, re-exported

MAX_NSIDE = 2**29


def check_nside(nside, name="nside"):
    """Return ``nside`` as a Python int after checking it is a power of two in [1, 2**29]."""
    if isinstance(nside, bool) or not isinstance(nside, numbers.Integral):
        raise TypeError(f"{name} must be an integer power of two, got {nside!r} ({type(nside).__name__})")
    nside = int(nside)
    if nside < 1 or nside > MAX_NSIDE or nside & (nside - 1):
        raise ValueError(f"{name} must be a power of two between 1 and 2**29, got {nside}")
    return nside


def check_kernel_size(kernel_sz, name="kernel_sz"):
    """Return the stencil side ``K`` after checking it is an odd integer >= 1."""
    if isinstance(kernel_sz, bool) or not isinstance(kernel_sz, numbers.Integral):
        raise TypeError(f"{name} must be an odd integer >= 1, got {kernel_sz!r}")
    kernel_sz = int(kernel_sz)
    if kernel_sz < 1 or kernel_sz % 2 == 0:
        raise ValueError(f"{name} must be an odd integer >= 1 (the stencil needs a centre), got {kernel_sz}")
    return kernel_sz


def check_positive_int(value, name):
    """Return ``value`` as a Python int after checking it is an integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_cell_ids(cell_ids, nside, name="cell_ids"):
    """Return ``cell_ids`` as a 1-D int64 array of unique NESTED ids valid at ``nside``.

    The order is kept: outputs of every op follow the order the user gave.
    """
    from ._arrays import to_host  # here: _arrays imports the backends, which need not load for a check

    arr = to_host(cell_ids)
    if arr.size == 0:  # before the dtype check: an empty list is float64 for NumPy
        raise ValueError(f"{name} must hold at least one cell, got an empty array of shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer NESTED cell ids, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    npix = 12 * nside * nside
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= npix:
        raise ValueError(f"{name} must lie in [0, {npix - 1}] for nside={nside}, got values in [{lo}, {hi}]")
    arr = arr.astype(np.int64, copy=False)
    sorted_ids = np.sort(arr)
    dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if dup.size:
        raise ValueError(f"{name} must be unique, got {dup.size} repeated id(s), e.g. {int(dup[0])}")
    return arr
