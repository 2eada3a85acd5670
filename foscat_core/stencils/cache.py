"""Memory and disk cache of stencil tables.

Tables are keyed by a hash of everything that determines them (format version, nside, K, gauge,
G and the cell ids in the user's order). On disk they live in ``$FOSCAT_CORE_CACHE_DIR`` (default
``$XDG_CACHE_HOME/foscat_core`` or ``~/.cache/foscat_core``); set the variable to an empty string to
keep tables in memory only. Files are written atomically (temporary file + rename).

A loaded file is checked for content, not only format: its key, shapes and dtypes, indices in
``[0, N_cells)``, weights finite, in ``[0, 1]`` and summing to 1 for every point. A corrupt,
stale or inconsistent file is rebuilt (with a warning), never trusted. A file or folder this user
may not read (``PermissionError``, e.g. another user's cache) is not corrupt: it is left as it is
(neither read nor overwritten), one warning per folder says so, and tables are computed without
the disk cache.
"""

import hashlib
import os
import threading
import warnings
from collections import OrderedDict

import numpy as np

from .._files import atomic_write
from .geometry import compute_stencil

FORMAT_VERSION = 3  # 2: round-off in-domain weights count as no neighbour; 3: full sky rotated from 3 faces
_WEIGHT_TOLERANCE = 1e-9  # computed rows sum to 1 within a few ulps
_MEMORY_ENTRIES = 16
_memory = OrderedDict()
_lock = threading.Lock()
_unreadable_warned = set()  # folders already reported as unreadable
_UNREADABLE = object()  # _load's answer for a file this user may not read


def cache_dir():
    """The disk cache folder, or ``None`` when disk caching is off.

    ``$FOSCAT_CORE_CACHE_DIR`` when set (an empty value turns disk caching off), else
    ``$XDG_CACHE_HOME/foscat_core``, else ``~/.cache/foscat_core``. Read at every call, so a
    change of the variable applies to the next stencil built; the folder is created on the first
    write only.

    Parameters
    ----------
    None

    Returns
    -------
    str or None

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> import foscat_core as fc
    >>> with mock.patch.dict(os.environ, {"FOSCAT_CORE_CACHE_DIR": "/tmp/my_stencils"}):
    ...     print(fc.cache_dir())
    /tmp/my_stencils
    >>> with mock.patch.dict(os.environ, {"FOSCAT_CORE_CACHE_DIR": ""}):
    ...     print(fc.cache_dir())
    None
    """
    env = os.environ.get("FOSCAT_CORE_CACHE_DIR")
    if env is not None:
        return env or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "foscat_core")


def table_key(domain, kernel_sz, gauge_type, n_gauges):
    digest = hashlib.sha1()
    digest.update(f"v{FORMAT_VERSION}|{domain.nside}|{kernel_sz}|{gauge_type}|{n_gauges}|".encode())
    digest.update(b"full" if domain.is_full_sky else domain.cell_ids.tobytes())
    return digest.hexdigest()


def stencil_table(domain, kernel_sz, gauge_type="phi", n_gauges=1):
    """``(index, weight)`` of :func:`compute_stencil`, from memory, disk or a fresh build."""
    key = table_key(domain, kernel_sz, gauge_type, n_gauges)
    with _lock:
        if key in _memory:
            _memory.move_to_end(key)
            return _memory[key]
    shape = (n_gauges, domain.n_cells, kernel_sz * kernel_sz, 4)
    folder = cache_dir()
    path = os.path.join(folder, f"stencil_{key}.npz") if folder else None
    table = _load(path, key, shape) if path else None
    if table is None or table is _UNREADABLE:
        writable = path is not None and table is None
        table = compute_stencil(domain, kernel_sz, gauge_type, n_gauges)
        if writable:
            _save(path, key, table)
    for arr in table:
        arr.setflags(write=False)
    with _lock:
        _memory[key] = table
        while len(_memory) > _MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return table


def clear_memory_cache():
    """Forget the stencil tables held in memory (the most recent 16); files on disk are kept.

    Stencils already built keep their tables; the next stencil with the same geometry reads
    the disk cache (see :func:`cache_dir`) or recomputes.

    Parameters
    ----------
    None

    Returns
    -------
    None

    Examples
    --------
    >>> import numpy as np
    >>> import foscat_core as fc
    >>> st = fc.SphericalStencil(nside=1, kernel_sz=3, backend="numpy")
    >>> fc.clear_memory_cache()
    >>> st.conv(np.ones((1, 1, 12)), np.full((1, 1, 9), 1 / 9)).shape  # (B, C_out, N_cells)
    (1, 1, 12)
    """
    with _lock:
        _memory.clear()


def _load(path, key, shape):
    """The table in ``path``; ``None`` when absent or rebuilt, ``_UNREADABLE`` when not ours to read."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            stored_key, index, weight = str(data["key"]), data["index"], data["weight"]
    except (FileNotFoundError, NotADirectoryError):  # no file (yet); a bad folder shows when saving
        return None
    except PermissionError as err:
        folder = os.path.dirname(path)
        with _lock:
            first = folder not in _unreadable_warned
            _unreadable_warned.add(folder)
        if first:
            warnings.warn(f"cannot read the stencil cache in {folder} ({err}): stencils are computed without it "
                          "and its files left untouched; set FOSCAT_CORE_CACHE_DIR to a folder of yours",
                          RuntimeWarning, stacklevel=3)
        return _UNREADABLE
    except Exception as err:  # any unreadable file is rebuilt, whatever broke it
        return _rebuild(path, err)
    problem = _inconsistency(stored_key, index, weight, key, shape)
    if problem:
        return _rebuild(path, problem)
    return index.astype(np.int64), weight.astype(np.float64)


def _inconsistency(stored_key, index, weight, key, shape):
    """What makes a loaded table unusable (the contract of :func:`compute_stencil`), or ``None``."""
    if stored_key != key:
        return "key mismatch"
    if index.shape != shape or weight.shape != shape:
        return f"shape {index.shape} / {weight.shape}, expected {shape}"
    if index.dtype.kind not in "iu" or weight.dtype.kind != "f":
        return f"dtypes {index.dtype} / {weight.dtype}, expected integer / float"
    if index.size and (index.min() < 0 or index.max() >= shape[1]):
        return f"indices outside [0, {shape[1]})"
    if not np.all(np.isfinite(weight)):
        return "non-finite weights"
    if index.size and (weight.min() < -_WEIGHT_TOLERANCE or weight.max() > 1 + _WEIGHT_TOLERANCE):
        return "weights outside [0, 1]"
    if np.any(np.abs(weight.sum(axis=-1) - 1.0) > _WEIGHT_TOLERANCE):
        return "weights of a point do not sum to 1"
    return None


def _rebuild(path, reason):
    warnings.warn(f"rebuilding corrupt stencil cache file {path}: {reason}", RuntimeWarning, stacklevel=4)
    return None


def _save(path, key, table):
    index, weight = table
    small = index.shape[1] < 2**31
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_write(path) as fh:
            np.savez(fh, key=np.array(key), index=index.astype(np.int32) if small else index, weight=weight)
    except OSError as err:  # a read-only or full disk must not stop the computation
        warnings.warn(f"could not write stencil cache {path}: {err}", RuntimeWarning, stacklevel=3)
