"""``show_history``: training or synthesis loss curves."""

import numbers

import numpy as np
from matplotlib.ticker import MaxNLocator

from ._common import finish, new_figure, to_host


def _curves(history):
    if isinstance(history, dict):
        curves = {}
        for key, val in history.items():
            if "loss" not in str(key):
                continue
            arr = to_host(val, f"history[{key!r}]")
            if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.number)):
                raise ValueError(f"history[{key!r}] must be a 1-D sequence of losses, got shape {arr.shape}")
            if arr.size:
                curves[str(key)] = arr.astype(np.float64)
        if not curves:
            raise ValueError(f"history holds no non-empty '*loss*' entry (keys: {sorted(map(str, history))})")
        return curves, "epoch"
    if isinstance(history, numbers.Number):
        raise ValueError("history must be a dict of loss lists or a 1-D array of losses, got a scalar")
    arr = to_host(history, "history")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"history must be a non-empty 1-D array of losses, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"history must hold numbers, got dtype {arr.dtype}")
    return {"loss": arr.astype(np.float64)}, "iteration"


def show_history(history, *, title=None, ax=None, show=False):
    """Loss curves on a log y axis.

    Parameters
    ----------
    history : dict or array, shape (T,)
        A ``fit`` history ``{"train_loss": [...], "val_loss": [...]}`` (every non-empty key
        containing ``"loss"`` is drawn, x axis: epoch) or a synthesis loss history (1-D array,
        e.g. ``Synthesis.get_history()``, x axis: iteration).
    title : str, optional
    ax : matplotlib Axes, optional
        Draw there; default a new figure.
    show : bool
        Call ``matplotlib.pyplot.show()``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from foscat_core import plot
    >>> fig = plot.show_history({"train_loss": [1.0, 0.5, 0.2], "val_loss": [1.1, 0.6, 0.3]}, title="U-Net")
    """
    curves, xlabel = _curves(history)
    if ax is None:
        fig = new_figure((6.0, 4.0))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    positive = True
    for name, arr in curves.items():
        start = 1 if xlabel == "epoch" else 0
        ax.plot(np.arange(start, start + arr.size), arr, marker="o" if arr.size <= 50 else None, ms=3, label=name)
        finite = arr[np.isfinite(arr)]
        positive &= bool(finite.size) and bool(np.all(finite > 0))
    ax.set_yscale("log" if positive else "symlog")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1 or xlabel == "epoch":
        ax.legend()
    if title is not None:
        ax.set_title(title)
    return finish(fig, show)
