"""Keep freed memory in the process for reuse (glibc malloc), an explicit opt-in.

glibc's malloc serves every block over 32 MiB (the ceiling of its dynamic mmap threshold) with
fresh pages from the kernel and returns them on free. From nside 256 on, a map of a few float64
or 16+ float32 channels is that large, so each training step or scattering gradient page-faults
all its large temporaries in again: on the 2-core VM of ``benchmarks/README.md`` a scattering
value+gradient at nside 256 spent 2.5 of its 5.1 s in the kernel (1.8 million page faults a
call), and its cost per cell was twice that at nside 64.

:func:`keep_freed_memory` raises that threshold and the heap's trim threshold, so freed blocks
stay in the process and the next call reuses them: the cost per cell then stays flat with the
map's size. It changes the whole process for its lifetime (glibc cannot report the settings it
replaces), and resident memory then stays at its high-water mark, so the library never calls it
itself. It is what ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do when set before
the process starts.
"""

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_INT_MAX = 2**31 - 1


def keep_freed_memory(max_block_bytes=1 << 30):
    """Make glibc's malloc keep freed blocks of up to ``max_block_bytes`` for reuse.

    Parameters
    ----------
    max_block_bytes : int
        Blocks up to this size come from the process's heap (and return to it when freed)
        instead of fresh kernel pages; at most ``2**31 - 1``. Default 1 GiB.

    Returns
    -------
    None

    Raises
    ------
    TypeError, ValueError
        ``max_block_bytes`` not an int in ``[1, 2**31 - 1]``.
    RuntimeError
        Not glibc's malloc (macOS, Windows, musl): there is nothing this call could change.

    Examples
    --------
    Once, at the start of a script that works on large maps: ``fc.keep_freed_memory()``
    (not run here: it would change the allocator of the process running these examples).

    >>> import foscat_core as fc
    >>> fc.keep_freed_memory(0)
    Traceback (most recent call last):
    ...
    ValueError: max_block_bytes must be in [1, 2147483647], got 0
    """
    if isinstance(max_block_bytes, bool) or not isinstance(max_block_bytes, int):
        raise TypeError(f"max_block_bytes must be an int, got {type(max_block_bytes).__name__}")
    if not 1 <= max_block_bytes <= _INT_MAX:
        raise ValueError(f"max_block_bytes must be in [1, {_INT_MAX}], got {max_block_bytes}")
    libc, version = _glibc()
    # The trim threshold first: a heap trimmed at every free would hand the kept blocks back anyway.
    for param, value in ((_M_TRIM_THRESHOLD, _INT_MAX), (_M_MMAP_THRESHOLD, max_block_bytes)):
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
            raise RuntimeError(f"glibc {version} refused mallopt({param}, {value}); glibc before 2.35 caps the "
                               "mmap threshold at 32 MiB: pass max_block_bytes <= 33554432 there")


def _glibc():
    """The C library when it is glibc, else RuntimeError."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        version = libc.gnu_get_libc_version
    except (OSError, TypeError, AttributeError) as err:
        raise RuntimeError(f"keep_freed_memory needs glibc's malloc; this process's C library ({name!r}) "
                           "is not glibc, so its allocator has no such setting") from err
    version.restype = ctypes.c_char_p
    return libc, version().decode()
