"""The demo's outputs: PNG figures, ``results.json`` with every number, a summary table."""

import json
import math
import os
import tempfile

from foscat_core._files import atomic_write

FIGURES = ("maps", "training_loss", "synthesis_maps", "synthesis_loss", "statistics")  # the PNGs figures() writes


def prepare_out(out, name="out"):
    """Create the folder ``out`` and check that the demo's files can be written there, before any
    work is done; ``ValueError`` naming ``name`` (the argument or option) otherwise."""
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{name} must be a folder (for the figures and results.json), but {out!r} is an existing file")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # the only sure test: create a file there
            pass
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        raise ValueError(f"{name} {out!r} cannot hold the demo's results: {err}") from err
    for file in [f"{n}.png" for n in FIGURES] + ["results.json"]:
        path = os.path.join(out, file)
        if os.path.isdir(path) or (os.path.exists(path) and not os.access(path, os.W_OK)):
            raise ValueError(f"{name} {out!r} holds {file} which cannot be overwritten (a folder or read-only)")
    return out


def write_json(path, payload):
    """Atomic JSON write (temp file in the same folder, then rename)."""
    with atomic_write(path, "w", suffix=".json") as f:
        json.dump(payload, f, indent=2)


def figures(out, cfg, ids, val_inputs, truth, pred, history, synth, stats):
    """Write every PNG; returns {name: path}. Needs matplotlib (``pip install 'foscat_core[plot]'``)."""
    from foscat_core import plot

    paths = {}

    def save(name, fig):
        paths[name] = os.path.join(out, f"{name}.png")
        plot.save(fig, paths[name], close=True)

    observed = val_inputs[0, 0].copy()
    observed[val_inputs[0, 1] == 0] = math.nan  # gaps shown blank
    save("maps", plot.show_maps([observed, truth[0, 0], pred[0, 0], pred[0, 0] - truth[0, 0]], cfg.nside, ids,
                                titles=["observed (noise, gaps)", "truth", "U-Net prediction", "residual"],
                                suptitle=f"Regional U-Net, nside {cfg.nside}, {len(ids)} cells"))
    save("training_loss", plot.show_history(history, title="HealpixUNet training"))
    start, result, target_map = synth["start"], synth["result"], synth["target_map"]
    save("synthesis_maps", plot.show_maps([start, result, target_map], cfg.nside, ids,
                                          titles=["start (white noise)", "synthesised", "a true field"],
                                          suptitle="Hybrid synthesis: scattering statistics + U-Net prior"))
    save("synthesis_loss", plot.show_history(synth["numbers"]["loss_history"], title="Synthesis loss (L-BFGS-B)"))
    save("statistics", plot.show_statistics(stats["synthesised"], label="synthesised", reference=stats["target"]))
    return paths


def summary_table(numbers):
    """A fixed-width text table of the headline numbers."""
    rows = [
        ("backend", numbers["backend"]),
        ("region", f"{numbers['n_cells']} cells at nside {numbers['nside']}"),
        ("U-Net weights", f"{numbers['n_parameters']}"),
        ("training time", f"{numbers['train_seconds']:.1f} s"),
        ("val loss, first -> last epoch", f"{numbers['val_loss_first_epoch']:.4f} -> {numbers['val_loss_final']:.4f}"),
        ("val MSE, U-Net / baseline", f"{numbers['val_mse_network']:.4f} / {numbers['val_mse_baseline']:.4f}"),
        ("skill score (1 - MSE ratio)", f"{numbers['skill_score']:.3f}"),
        ("synthesis time", f"{numbers['synthesis_seconds']:.1f} s ({numbers['iterations']} iterations)"),
        ("statistics distance start -> end", f"{numbers['stat_distance_start']:.4g} -> {numbers['stat_distance_final']:.4g}"
                                             f" ({numbers['stat_distance_reduction']:.1f}x closer)"),
        ("same distance for a true field", f"{numbers['stat_distance_true_field']:.4g}"),
    ]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 40)
    return "\n".join([line] + [f"{k:<{width}}  {v}" for k, v in rows] + [line])
