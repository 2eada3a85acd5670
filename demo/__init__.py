"""The main demo: ``python -m foscat_core demo`` (or the ``foscat-core demo`` command).

A regional problem built from what ships with the dependencies: CMB-like fields observed through
noise and a mask on a disc, a HealpixUNet trained to recover the clean field (validation loss and a
skill score against a trivial baseline), then a hybrid synthesis (scattering statistics plus the
trained network as a prior). Pictures, ``results.json`` and a summary table go to ``--out``.
"""

import os
import time

import numpy as np

from .pipeline import DemoConfig, hybrid_synthesis, make_data, train_unet
from .report import figures, prepare_out, summary_table, write_json


def run_demo(cfg, out="foscat_demo", make_figures=True):
    """Run every step; returns the dict written to ``out/results.json``.

    ``out`` is created and checked first (``ValueError`` when it is a file or not writable), so
    a run never ends without somewhere to put its results.
    """
    prepare_out(out)
    t0 = time.perf_counter()
    say = print if cfg.verbose else (lambda *a, **k: None)
    say(f"[1/3] data: CMB-like fields on a {cfg.radius_deg:g} degree disc at nside {cfg.nside}")
    ids, mask, train, val = make_data(cfg)
    say(f"[2/3] training a HealpixUNet on {len(ids)} cells ({cfg.backend})")
    net, history, pred, numbers = train_unet(cfg, ids, train, val)
    say("[3/3] hybrid synthesis: scattering statistics + the trained U-Net as a prior")
    op, target, start, result, synth_numbers = hybrid_synthesis(cfg, net, ids, train[1][:, 0], val[1][0, 0])
    numbers.update(synth_numbers)
    numbers.update(backend=cfg.backend, nside=cfg.nside, n_cells=int(len(ids)), masked_fraction=float(1 - mask.mean()),
                   total_seconds=time.perf_counter() - t0)
    if make_figures:
        synth = {"start": start, "result": result, "target_map": val[1][0, 0], "numbers": synth_numbers}
        stats = {"synthesised": op.eval(np.asarray(result, np.float32)[None], cell_ids=ids, nside=cfg.nside,
                                        norm="self"),
                 "target": target}
        numbers["figures"] = figures(out, cfg, ids, val[0], val[1], pred, history, synth, stats)
    numbers["history"] = {k: [float(v) for v in vals] for k, vals in history.items()}
    numbers["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    write_json(os.path.join(out, "results.json"), numbers)
    # The summary is the point of the run: printed even with --quiet (which silences progress).
    print(summary_table(numbers))
    print(f"figures and results.json in {os.path.abspath(out)}")
    return numbers


__all__ = ["DemoConfig", "run_demo"]
