"""Refusing, before allocating, objects that cannot fit in memory.

A full-sky domain at nside ``2**29`` holds ``12 * 4**29`` cells: its id array alone would take
exabytes, and numpy or the OOM killer would stop the process long after the call that asked for
it. The constructors that allocate in proportion to the number of cells (a full-sky
:class:`~foscat_core.domain.Domain`, stencil tables) first compare a lower bound of what they need
with the memory available and raise a ``ValueError`` naming the sizes when it cannot fit.
"""

import os

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def available_memory():
    """Bytes of memory this process can still use.

    ``MemAvailable`` of ``/proc/meminfo`` (physical memory where that file is absent), capped by
    the cgroup v2 limit of a container (``/sys/fs/cgroup/memory.max``) when one is set.

    Returns
    -------
    int

    Examples
    --------
    >>> available_memory() > 0
    True
    """
    avail = _meminfo_available()
    if avail is None:
        avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_limit()
    return min(avail, limit) if limit is not None else avail


def _meminfo_available():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_limit():
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            text = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return None if text == "max" else max(int(text) - used, 0)


def format_bytes(n):
    """``n`` bytes in the largest unit that keeps the number >= 1, e.g. ``'27.7 EB'``.

    Examples
    --------
    >>> format_bytes(512), format_bytes(3 * 2**30)
    ('512 B', '3.2 GB')
    """
    value, unit = float(n), 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def require_memory(n_bytes, what, nside, n_cells, hint):
    """Raise a ``ValueError`` when ``n_bytes`` exceeds :func:`available_memory`.

    Parameters
    ----------
    n_bytes : int
        A lower bound of what the object about to be built needs.
    what : str
        What needs it, e.g. ``"the stencil tables (G*N*K*K*4 int64 indices + float64 weights)"``.
    nside, n_cells : int
        The resolution and number of cells, named in the message.
    hint : str
        What the user can do instead.

    Examples
    --------
    >>> require_memory(8, "a tiny table", 1, 12, "")   # fits: returns nothing
    >>> require_memory(10**24, "a huge table", 2**29, 12 * 4**29, "use cell_ids")
    Traceback (most recent call last):
    ...
    ValueError: nside=536870912 with 3458764513820540928 cells: a huge table would take about 1.0 YB ...
    """
    avail = available_memory()
    if n_bytes > avail:
        raise ValueError(f"nside={nside} with {n_cells} cells: {what} would take about {format_bytes(n_bytes)} "
                         f"({n_bytes} bytes), more than the {format_bytes(avail)} ({avail} bytes) of memory available; {hint}")


def require_full_sky_ids(nside, copies=1):
    """Refuse a full sky at ``nside`` whose ``copies`` int64 id arrays cannot fit in memory.

    Examples
    --------
    >>> require_full_sky_ids(2**29)
    Traceback (most recent call last):
    ...
    ValueError: nside=536870912 with 3458764513820540928 cells: the full-sky cell ids (int64) would take about 27.7 EB ...
    """
    npix = 12 * nside * nside
    require_memory(8 * copies * npix, "the full-sky cell ids (int64)", nside, npix,
                   "give the cells of a region with cell_ids, or use a smaller nside")


def require_stencil_memory(nside, n_cells, kernel_sz, n_gauges):
    """Refuse stencil tables that cannot fit: index (int64) and weight (float64) tables of shape
    (G, N, K*K, 4), a lower bound of what a stencil holds.

    Examples
    --------
    >>> require_stencil_memory(64, 12 * 64**2, 3, 1)   # 28 MB: fits
    """
    require_memory(64 * n_gauges * n_cells * kernel_sz**2,
                   f"the stencil tables (G*N*K*K*4 int64 indices + float64 weights, G={n_gauges}, K={kernel_sz})",
                   nside, n_cells, "give the cells of a region with cell_ids, or use a smaller nside or kernel_sz")
