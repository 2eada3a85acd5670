"""``show_statistics``: a scattering statistics object at a glance (S1, S2, S3, S4 per scale)."""

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from ._common import finish, new_figure

_MARKERS = ("o", "s", "^", "v", "D", "P", "X")
_FIG_TAG = "_foscat_core_statistics_axes"


def _summaries(stats, name="stats"):
    """Host summaries of a statistics object: batch-averaged, first mask row, moduli.

    Returns a dict: S0 (2,) or None, S1 (J, K), S2 (J, K), S3 (n_s3,) and S4 (n_s4,) (the modulus
    of the normalised coefficient averaged over orientations), j2_j3, j1_j2_j3.
    """
    if not (hasattr(stats, "numpy") and hasattr(stats, "j2_j3") and hasattr(stats, "j1_j2_j3")):
        raise TypeError(f"{name} must be a scattering statistics object (foscat_core.scattering), "
                        f"got {type(stats).__name__}")
    coeffs = stats.numpy()
    missing = [n for n in ("S1", "S2") if n not in coeffs]
    if missing:
        raise ValueError(f"{name} holds no {', '.join(missing)} coefficients, got {tuple(coeffs)}")

    def first(a):  # (B, M, ...) -> (...): mean over the batch, first mask row
        a = np.asarray(a)
        if a.ndim < 3:
            raise ValueError(f"{name}: expected (B, M, ...) coefficients, got shape {a.shape}")
        return a.mean(axis=0)[0]

    out = {"S0": np.real(first(coeffs["S0"])) if "S0" in coeffs else None,
           "S1": np.abs(first(coeffs["S1"])), "S2": np.abs(first(coeffs["S2"])),
           "j2_j3": np.asarray(stats.j2_j3), "j1_j2_j3": np.asarray(stats.j1_j2_j3)}
    s2 = out["S2"]  # (J, K)
    normalised = getattr(stats, "norm", None) is not None
    with np.errstate(divide="ignore", invalid="ignore"):
        if "S3" in coeffs and out["j2_j3"].size:
            s3 = first(coeffs["S3"])  # (n_s3, K, K): [s, k2, k3]
            if not normalised:
                j2, j3 = out["j2_j3"][:, 0], out["j2_j3"][:, 1]
                s3 = s3 / np.sqrt(s2[j2][:, :, None] * s2[j3][:, None, :])
            out["S3"] = np.abs(s3).mean(axis=(1, 2))
        if "S4" in coeffs and out["j1_j2_j3"].size:
            s4 = first(coeffs["S4"])  # (n_s4, K, K, K): [s, k1, k2, k3]
            if not normalised:
                j1, j2 = out["j1_j2_j3"][:, 0], out["j1_j2_j3"][:, 1]
                s4 = s4 / np.sqrt(s2[j1][:, :, None, None] * s2[j2][:, None, :, None])
            out["S4"] = np.abs(s4).mean(axis=(1, 2, 3))
    return out


def _axes(ax_or_fig):
    """Four Axes (S1, S2, S3, S4) and the figure; a figure made by this function is reused."""
    if ax_or_fig is None:
        fig = new_figure((11.0, 7.5))
    elif hasattr(ax_or_fig, "add_subplot"):
        fig = ax_or_fig
    else:
        try:
            axes = list(np.asarray(ax_or_fig, dtype=object).ravel())
        except Exception:  # noqa: BLE001
            axes = []
        if len(axes) != 4 or not all(hasattr(a, "plot") for a in axes):
            raise ValueError("ax_or_fig must be None, a Figure or a sequence of 4 Axes (S1, S2, S3, S4), got "
                             f"{type(ax_or_fig).__name__}")
        return axes[0].figure, axes, 0
    tagged = getattr(fig, _FIG_TAG, None)
    if tagged is not None:
        axes, count = tagged
        setattr(fig, _FIG_TAG, (axes, count + 1))
        return fig, axes, count
    if fig.axes:
        raise ValueError("ax_or_fig: the figure already holds axes not made by show_statistics; pass an empty "
                         "figure, one returned by show_statistics, or 4 Axes")
    axes = list(fig.subplots(2, 2).ravel())
    setattr(fig, _FIG_TAG, (axes, 1))
    return fig, axes, 0


def _positive_log(ax, arrays):
    if all(np.all(np.asarray(a)[np.isfinite(a)] > 0) for a in arrays):
        ax.set_yscale("log")


def _sparse_ticks(ax, labels, max_labels=24):
    step = max(1, -(-len(labels) // max_labels))
    pos = np.arange(0, len(labels), step)
    ax.set_xticks(pos)
    ax.set_xticklabels([labels[i] for i in pos], rotation=90, fontsize=7)


def show_statistics(stats, *, label=None, ax_or_fig=None, reference=None, reference_label="reference",
                    show=False):
    """Plot scattering statistics: S1 and S2 per scale and orientation, S3 and S4 summaries.

    Panels (a 2 x 2 grid): S1 ``<|x * W_jk|>`` and S2 ``<|x * W_jk|**2>`` versus the scale ``j``
    with one line (colour) per orientation ``k`` (log y); S3 versus the scale pairs ``(j2, j3)``
    and S4 versus the triplets ``(j1, j2, j3)``, each the modulus of the normalised coefficient
    (``S3 / sqrt(S2_j2 S2_j3)``, ``S4 / sqrt(S2_j1 S2_j2)`` unless the object already carries a
    normalisation) averaged over orientations. A batch is averaged over its batch axis; with a
    mask axis the first mask row is shown; complex coefficients (e.g. cross S2) by modulus.

    Parameters
    ----------
    stats : ScatteringStatistics
        From ``foscat_core.scattering.funct(...).eval(x)``, any backend. Shapes: S1, S2
        (B, M, J, K); S3 (B, M, n_s3, K, K, 2); S4 (B, M, n_s4, K, K, K, 2).
    label : str, optional
        Legend entry for ``stats`` (solid lines).
    ax_or_fig : Figure or sequence of 4 Axes, optional
        Draw into these. A figure returned by an earlier call is reused and the new statistics
        overlaid (next colour / marker), so ``show_statistics(b, ax_or_fig=show_statistics(a))``
        compares two objects.
    reference : ScatteringStatistics, optional
        Drawn dashed in the same colours, e.g. the target of a synthesis.
    reference_label : str
    show : bool
        Call ``matplotlib.pyplot.show()``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core import plot
    >>> from foscat_core.scattering import funct
    >>> op = funct(KERNELSZ=3, NORIENT=4, backend="numpy")
    >>> rng = np.random.default_rng(0)
    >>> target, synth = op.eval(rng.normal(size=(1, 768))), op.eval(rng.normal(size=(1, 768)))
    >>> fig = plot.show_statistics(synth, label="synthesised", reference=target, reference_label="target")
    """
    cur = _summaries(stats, "stats")
    ref = _summaries(reference, "reference") if reference is not None else None
    if ref is not None and ref["S1"].shape != cur["S1"].shape:
        raise ValueError(f"reference has S1 of shape (J, K) = {ref['S1'].shape}, stats {cur['S1'].shape}")
    fig, axes, count = _axes(ax_or_fig)
    marker = _MARKERS[count % len(_MARKERS)]
    series_colour = f"C{count % 10}"
    n_scales, n_orient = cur["S1"].shape
    colours = matplotlib.colormaps["plasma"](np.linspace(0.0, 0.85, n_orient))
    js = np.arange(n_scales)

    for ax, key, ylabel in ((axes[0], "S1", "S1 = <|x * W|>"), (axes[1], "S2", "S2 = <|x * W|^2>")):
        for k in range(n_orient):
            ax.plot(js, cur[key][:, k], marker=marker, color=colours[k], lw=1.4, ms=4)
            if ref is not None:
                ax.plot(js, ref[key][:, k], ls="--", color=colours[k], lw=1.2)
        _positive_log(ax, [cur[key]] + ([ref[key]] if ref is not None else []))
        ax.set_xticks(js)
        ax.set_xlabel("scale j (0 = finest)")
        ax.set_ylabel(ylabel)

    for ax, key, pairs, name in ((axes[2], "S3", cur["j2_j3"], "(j2,j3)"),
                                 (axes[3], "S4", cur["j1_j2_j3"], "(j1,j2,j3)")):
        if key not in cur:
            ax.text(0.5, 0.5, f"no {key}", ha="center", va="center", transform=ax.transAxes)
            continue
        xs = np.arange(cur[key].size)
        ax.plot(xs, cur[key], marker=marker, color=series_colour, lw=1.4, ms=3)
        if ref is not None and key in ref and ref[key].shape == cur[key].shape:
            ax.plot(xs, ref[key], ls="--", color=series_colour, lw=1.2)
        _positive_log(ax, [cur[key]] + ([ref[key]] if ref is not None and key in ref else []))
        _sparse_ticks(ax, [",".join(str(int(v)) for v in p) for p in pairs])
        ax.set_xlabel(f"scales {name}")
        ax.set_ylabel(f"|{key}| normalised, mean over orientations")

    # legends: orientation colours; series markers / reference dashes
    axes[0].legend([Line2D([], [], color=c) for c in colours], [f"k={k}" for k in range(n_orient)],
                   fontsize=7, title="orientation", title_fontsize=7, loc="best")
    handles = getattr(fig, "_foscat_core_statistics_legend", [])
    handles = [h for h in handles if h[1] != reference_label or ref is None]
    handles.append((Line2D([], [], color=series_colour, marker=marker, lw=1.4), label or f"statistics {count}"))
    if ref is not None:
        handles.append((Line2D([], [], color="0.3", ls="--"), reference_label))
    fig._foscat_core_statistics_legend = handles
    for ax in axes[1:]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    axes[1].legend([h for h, _ in handles], [t for _, t in handles], fontsize=7, loc="best")
    if cur["S0"] is not None and count == 0 and cur["S0"].size >= 2:
        axes[0].set_title(f"mean {cur['S0'][0]:.3g}, variance {cur['S0'][1]:.3g}", fontsize=9)
    return finish(fig, show)
