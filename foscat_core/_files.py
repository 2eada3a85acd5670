"""Atomic file writes: a reader never sees a half-written file, a crash leaves no temporary.

A file written here ends up as a plain ``open(path, "w")`` would leave it: a new file gets the
mode the umask allows (the kernel applies it, as for ``open``), an existing file keeps its mode,
a symbolic link is written through (its target is replaced, the link stays a link), and an
existing file ``open`` could not write (read-only) is refused. The data is flushed and
``fsync``-ed before the rename, and the folder is ``fsync``-ed after it where the OS allows, so
a crash leaves either the old or the new file, whole.

The temporary file lives in the target's folder (a rename is atomic within one file system
only). A folder that does not allow creating it is an error naming that folder: there is no
silent fallback to a non-atomic write.
"""

import contextlib
import errno
import os
import secrets
import stat
import struct
import zipfile
import zlib

_NEW_FILE_MODE = 0o666  # what open() asks for; the kernel removes the umask bits


@contextlib.contextmanager
def atomic_write(path, mode="wb", suffix=".tmp"):
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. A symbolic link is followed: its target is replaced.
    mode : {"wb", "w"}
        Binary or text.
    suffix : str
        Ending of the temporary file's name (``.tmp-<random><suffix>`` in the same folder).

    Yields
    ------
    file object
        Write to it; on leaving the block without an exception it becomes ``path``.

    Raises
    ------
    PermissionError
        ``path`` exists and is not writable, or its folder does not allow creating a file
        (the message names the folder).
    FileNotFoundError
        The folder does not exist.
    IsADirectoryError
        ``path`` is a folder.

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("done")
    >>> open(target).read()
    'done'
    """
    target = os.path.realpath(os.fspath(path))  # write through symbolic links
    folder = os.path.dirname(target)
    existing_mode = _existing_mode(path, target)
    fd, tmp = _create_temporary(path, folder, suffix)
    try:
        with os.fdopen(fd, mode) as handle:
            if existing_mode is not None:
                os.chmod(tmp, existing_mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _existing_mode(path, target):
    """The permission bits of an existing target (kept on overwrite), ``None`` for a new file."""
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"cannot write {os.fspath(path)!r}: it is a folder")
    if not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, f"cannot write {os.fspath(path)!r}: the file is not writable")
    return stat.S_IMODE(info.st_mode)


def _create_temporary(path, folder, suffix):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(tmp, flags, _NEW_FILE_MODE), tmp
        except FileExistsError:  # a name already taken (2**-64 odds): draw another
            continue
        except FileNotFoundError as err:
            raise FileNotFoundError(errno.ENOENT, f"cannot write {os.fspath(path)!r}: folder {folder!r} "
                                    "does not exist") from err
        except PermissionError as err:
            raise PermissionError(errno.EACCES, f"cannot write {os.fspath(path)!r}: folder {folder!r} does not "
                                  "allow creating files (an atomic write creates a temporary file there, then "
                                  "renames it over the target)") from err


def _fsync_folder(folder):
    """Make the rename itself durable; not possible on every OS (Windows cannot open folders)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the data itself is on disk
        pass
    finally:
        os.close(fd)


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip member first, or an empty archive
# What reading a damaged archive raises (zip structure, CRC, member headers, array headers);
# RuntimeError: flags read as encryption or an unknown compression.
_DAMAGED = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, struct.error, SyntaxError,
            RuntimeError)


def read_npz(path, what):
    """Every array of the ``.npz`` archive at ``path`` as a dict, the file closed on return.

    ``FileNotFoundError`` passes through (Python's convention); anything else that is not a
    readable archive (empty, a plain ``.npy``, random bytes, truncated, corrupted) is a
    ``ValueError`` naming ``path`` and ``what`` it should have been.
    """
    import numpy as np

    with open(os.fspath(path), "rb") as fh:
        magic = fh.read(4)
        if magic not in _ZIP_MAGIC:
            found = "an empty file" if not magic else f"a file starting with {magic!r}"
            raise ValueError(f"{path} is not a {what} (an .npz archive): it is {found}")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except _DAMAGED as err:
            raise ValueError(f"{path} is a damaged {what} (truncated or corrupted): {type(err).__name__}: {err}") from err
