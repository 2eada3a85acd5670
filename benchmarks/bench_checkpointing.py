"""Peak memory and time of a full-sky HealpixUNet training step on torch, with and without
``checkpointing=True``.

    python benchmarks/bench_checkpointing.py                       # nside 64 and 128
    python benchmarks/bench_checkpointing.py --nsides 256 --reps 1

Each case (nside x checkpointing) runs in a fresh subprocess: 1 input channel, chanlist
[16, 32, 64], batch 2, float32, Adam. Reported per case: ``peak``, the process's ru_maxrss
(imports, stencil tables, weights and the steps); ``step peak``, the largest rise of resident
memory during one step after the first (the peak is reset before each step through
/proc/self/clear_refs): the activations kept for the backward pass and the backward's working
set; the median step time after the first step; and the loss of the first step (the same with
and without checkpointing). The children run with ``MALLOC_MMAP_THRESHOLD_`` fixed at 128 KiB
so that glibc returns large freed blocks at once: resident memory then follows live memory
(by default freed activations stay resident and the next step reuses them unseen).
"""

import argparse
import json
import os
import subprocess
import sys
import time

CHANLIST = [16, 32, 64]


CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _status_mb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024.0 for line in f if line.startswith(key + ":"))


def run_case(nside, checkpointing, batch, reps):
    import resource

    import numpy as np

    from foscat_core.nn import HealpixUNet

    n = 12 * nside**2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 1, n)).astype(np.float32)
    y = rng.normal(size=(batch, 1, n)).astype(np.float32)
    net = HealpixUNet(nside, 1, CHANLIST, backend="torch", seed=0, checkpointing=checkpointing)
    step = net.fw.trainer(net, net.default_loss(), net.fw.optimizer(net, "adam", 1e-3, 0.0, 0.0))
    xb, yb = net.backend.asarray(x), net.backend.asarray(y)
    loss = step(xb, yb, None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    times, step_peaks = [], []
    for _ in range(reps):
        before = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident memory (VmHWM) to the current one
        t0 = time.perf_counter()
        step(xb, yb, None)
        times.append(time.perf_counter() - t0)
        step_peaks.append(_status_mb("VmHWM") - before)
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return {"nside": nside, "checkpointing": checkpointing, "peak_mb": peak, "step_peak_mb": max(step_peaks),
            "step_s": float(np.median(times)), "loss": loss}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nsides", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(run_case(int(args._child[0]), args._child[1] == "True", args.batch, args.reps)))
        return
    print(f"{'nside':>5s} {'ckpt':>5s} {'peak MB':>8s} {'step peak MB':>12s} {'step':>8s} {'loss':>12s}")
    for nside in args.nsides:
        rows = []
        for checkpointing in (False, True):
            out = subprocess.run([sys.executable, __file__, "--batch", str(args.batch), "--reps", str(args.reps),
                                  "--_child", str(nside), str(checkpointing)], capture_output=True, text=True,
                                 env={**os.environ, **CHILD_ENV})
            if out.returncode != 0:
                print(f"{nside:5d} {checkpointing!s:>5s} failed:\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{nside:5d} {checkpointing!s:>5s} {r['peak_mb']:8.0f} {r['step_peak_mb']:12.0f} "
                  f"{r['step_s']:7.2f}s {r['loss']:12.8f}", flush=True)
        if len(rows) == 2:
            plain, ckpt = rows
            print(f"nside {nside}: step peak / {plain['step_peak_mb'] / ckpt['step_peak_mb']:.2f}, "
                  f"process peak / {plain['peak_mb'] / ckpt['peak_mb']:.2f}, "
                  f"time x {ckpt['step_s'] / plain['step_s']:.2f}", flush=True)


if __name__ == "__main__":
    main()
