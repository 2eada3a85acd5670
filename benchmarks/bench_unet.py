"""One HealpixUNet training step (forward, backward, Adam) per case and backend, with peak memory.

    python benchmarks/bench_unet.py                    # all cases, torch, tensorflow and jax
    python benchmarks/bench_unet.py --backends torch --cases disc --reps 5
    python benchmarks/bench_unet.py --backends torch planar   # beside a planar conv2d U-Net

``planar``: a torch U-Net of ``conv2d`` layers with the same channel list, batch and input
channels on an H x W image of about the same number of pixels (``_planar_unet.py``), trained by
the same Adam step: the planar baseline of the same size.

Cases follow the reference documentation's example: 6 input channels, chanlist [16, 32, 64],
batch 8, float32, on (a) a 30 degree disc around (theta=pi/2, phi=0) at nside 64, (b) the full sky
at nside 32, (c) the full sky at nside 64. Every case runs in a fresh subprocess so its peak
resident memory (ru_maxrss, which includes the framework itself) is its own. Reported: median
step time after one warm-up step (which also builds the stencil tables and traces tf.function).
"""

import argparse
import json
import os
import subprocess
import sys
import time

CASES = {"disc": (64, 30.0), "full32": (32, None), "full64": (64, None)}


def run_planar_case(case, reps):
    import resource

    import numpy as np
    import torch

    from _planar_unet import image_shape, planar_unet

    nside, radius = CASES[case]
    n = 12 * nside**2 if radius is None else _disc_cells(nside, radius)
    h, w = image_shape(n, 3)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(8, 6, h, w)).astype(np.float32))
    y = torch.as_tensor(rng.normal(size=(8, 1, h, w)).astype(np.float32))
    t0 = time.perf_counter()
    net = planar_unet(torch, 6, [16, 32, 64])
    build = time.perf_counter() - t0
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)

    def step():
        opt.zero_grad()
        loss = torch.mean((net(x) - y) ** 2)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"case": case, "backend": f"planar {h}x{w}", "n_cells": h * w, "build_s": build, "first_step_s": first,
            "step_s": float(np.median(times)), "peak_mb": peak_mb}


def _disc_cells(nside, radius):
    import healpy as hp
    import numpy as np

    return len(hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(radius), nest=True))


def run_case(case, backend, reps):
    if backend == "planar":
        return run_planar_case(case, reps)
    import resource

    import healpy as hp
    import numpy as np

    from foscat_core.nn import HealpixUNet

    nside, radius = CASES[case]
    ids = None if radius is None else hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(radius), nest=True)
    n = 12 * nside**2 if ids is None else len(ids)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, n)).astype(np.float32)
    y = rng.normal(size=(8, 1, n)).astype(np.float32)
    t0 = time.perf_counter()
    net = HealpixUNet(nside, 6, [16, 32, 64], cell_ids=ids, backend=backend)
    build = time.perf_counter() - t0
    optimiser = net.fw.optimizer(net, "adam", 1e-3, 1e-5, 0.0)
    step = net.fw.trainer(net, net.default_loss(), optimiser)
    xb, yb = net.backend.asarray(x), net.backend.asarray(y)
    t0 = time.perf_counter()
    step(xb, yb, None)
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(xb, yb, None)
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"case": case, "backend": backend, "n_cells": n, "build_s": build, "first_step_s": first,
            "step_s": float(np.median(times)), "peak_mb": peak_mb}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["torch", "tensorflow", "jax"],
                        help="torch, tensorflow, jax, and planar (the conv2d baseline)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(run_case(args._child[0], args._child[1], args.reps)))
        return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    print(f"{'case':8s} {'backend':14s} {'cells':>7s} {'build':>8s} {'1st step':>9s} {'step':>8s} {'peak MB':>8s}")
    for case in args.cases:
        for backend in args.backends:
            out = subprocess.run([sys.executable, __file__, "--reps", str(args.reps), "--_child", case, backend],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(f"{case:8s} {backend:11s} failed:\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{case:8s} {r['backend']:14s} {r['n_cells']:7d} {r['build_s']:7.2f}s {r['first_step_s']:8.2f}s "
                  f"{r['step_s']:7.3f}s {r['peak_mb']:8.0f}")
    print("reference library (not run here; quoted from the project's issues, measured earlier on a 2-core "
          "machine like this one): disc 2.1 s / 1.3 GB, full32 9.3 s / 3.0 GB, full64 ~37 s forward alone / 5.5 GB")


if __name__ == "__main__":
    main()
