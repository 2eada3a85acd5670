"""Shared plumbing of :mod:`foscat_core.plot`: the matplotlib import, host conversion, atomic save."""

import os
import sys

from foscat_core._arrays import to_host as host_array
from foscat_core._files import atomic_write

try:
    import matplotlib
except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
    raise ImportError("foscat_core.plot needs matplotlib; install it with: pip install 'foscat_core[plot]'") from exc

SAVE_DPI = 120


def _backend_unresolved():
    getter = getattr(matplotlib.rcParams, "_get_backend_or_none", None)  # matplotlib >= 3.8
    if getter is not None:
        return getter() is None
    return "matplotlib.pyplot" not in sys.modules


def _choose_backend():
    """Use Agg on a Linux machine with no display, unless a backend was already chosen.

    (healpy imports pyplot on import, but the backend stays unresolved until a figure is made.)
    """
    if os.environ.get("MPLBACKEND") or "ipykernel" in sys.modules or not _backend_unresolved():
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        matplotlib.use("Agg")


_choose_backend()

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)


def to_host(x, name):
    """A NumPy array of a NumPy array or a framework tensor (see ``foscat_core._arrays.to_host``)."""
    try:
        arr = host_array(x)
    except Exception as exc:  # noqa: BLE001 - report what came
        raise TypeError(f"{name} must be an array or tensor, got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got an object array")
    return arr


def new_figure(figsize):
    return plt.figure(figsize=figsize, layout="constrained")


def finish(fig, show):
    if show:
        plt.show()
    return fig


def save(fig, path, close=False):
    """Write ``fig`` as a PNG at 120 dpi, atomically.

    The image goes to a temporary file in the destination folder, which then replaces ``path``
    in one ``os.replace``: a reader never sees a half-written file.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Any figure, e.g. the one :func:`show_map` returns.
    path : str or os.PathLike
        Destination; written in PNG format whatever its suffix. The folder must exist.
    close : bool
        Close the figure afterwards (pyplot keeps every figure it made until closed; scripts
        that write many figures should pass ``True``).

    Returns
    -------
    str
        ``path`` as a string.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from foscat_core import plot
    >>> fig = plot.show_map(np.arange(48.0), nside=2)
    >>> out = plot.save(fig, os.path.join(tempfile.mkdtemp(), "map.png"))
    >>> open(out, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"path: folder {folder!r} does not exist")
    with atomic_write(path, suffix=".png") as fh:
        fig.savefig(fh, format="png", dpi=SAVE_DPI)
    if close:
        plt.close(fig)
    return path
