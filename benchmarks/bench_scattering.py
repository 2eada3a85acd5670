"""Time the scattering-covariance operator: one ``eval`` and one value-and-gradient of a loss.

    python benchmarks/bench_scattering.py                     # nside 32 and 64, torch, tensorflow and jax
    python benchmarks/bench_scattering.py --nside 64 --backends torch --reps 10
    python benchmarks/bench_scattering.py --threads 2

Every case (backend, nside) runs in its own subprocess so that its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes the imported framework) is its
own. Full-sky maps, one map per batch (B=1), ``funct(KERNELSZ, NORIENT, all_type="float64")``
with the default number of scales (down to nside 1), no mask, no normalisation.

* **eval**: ``op.eval(x)`` (forward only, no gradient tape/graph when the backend allows it).
* **value+grad**: ``backend.value_and_grad(lambda u: stat.reduce_mean_batch((op.eval(u) - ref) ** 2), x)``;
  on JAX the same function through ``backend.compile_value_and_grad`` (``jax.jit``, as ``Synthesis``
  runs it: eager JAX traces the whole loss again at every call), in 64-bit mode.
* **first**: the first value-and-gradient call, including the stencil builds of every scale.
* **of which imports**: the peak RSS after importing the framework and one tiny ``eval`` at nside 2
  (TensorFlow alone takes about 600 MB, torch about 300 MB); the difference is the operator's.

Median (and minimum) over ``--reps`` timed calls after ``--warmup`` untimed ones. Stencil tables
come from the disk cache when it has them (set ``FOSCAT_CORE_CACHE_DIR=""`` to disable it).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from _timing import timings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed(fn, reps, warmup):
    times = timings(fn, reps, warmup)
    return statistics.median(times), min(times)


def run_case(backend, nside, kernel, norient, reps, warmup, threads):
    import numpy as np

    if backend == "torch" and threads:
        import torch

        torch.set_num_threads(threads)
    if backend == "tensorflow" and threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    from foscat_core.scattering import funct

    op = funct(KERNELSZ=kernel, NORIENT=norient, all_type="float64", backend=backend)
    bk = op.backend
    op.eval(np.ones(48))  # framework warm-up at nside 2: the RSS after it is the baseline
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    rng = np.random.default_rng(0)
    npix = 12 * nside * nside
    ref = op.eval(rng.normal(size=(1, npix)))
    x = bk.asarray(rng.normal(size=(1, npix)), dtype="float64")

    def loss(u):
        stat = op.eval(u)
        return stat.reduce_mean_batch((stat - ref) ** 2)

    value_and_grad = lambda u: bk.value_and_grad(loss, u)  # noqa: E731
    if backend == "jax":
        compiled = bk.compile_value_and_grad(lambda u: (loss(u), []))
        value_and_grad = lambda u: compiled(u)[::2]  # noqa: E731 - (value, grad)
    t0 = time.perf_counter()
    value, grad = value_and_grad(x)
    first = time.perf_counter() - t0
    if backend == "torch":
        import torch

        def forward():
            with torch.no_grad():
                op.eval(x)
    else:
        def forward():  # a host copy of a small result: JAX dispatches asynchronously
            bk.to_numpy(op.eval(x).S0)
    ev = timed(forward, reps, warmup)
    vg = timed(lambda: bk.to_numpy(value_and_grad(x)[1]), reps, warmup)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    n_scales = len(ref.S1.shape) and int(ref.S1.shape[2])
    return {"backend": backend, "nside": nside, "scales": n_scales, "eval": ev, "vg": vg, "first": first,
            "rss_mb": rss_mb, "base_mb": base_mb, "loss": float(bk.to_numpy(value))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nside", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--backends", nargs="+", default=["torch", "tensorflow", "jax"])
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--norient", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="framework threads (0: framework default)")
    parser.add_argument("--case", nargs=2, metavar=("BACKEND", "NSIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        res = run_case(args.case[0], int(args.case[1]), args.kernel, args.norient, args.reps, args.warmup,
                       args.threads)
        print("RESULT " + json.dumps(res))
        return
    print(f"# scattering covariance, KERNELSZ={args.kernel} NORIENT={args.norient} float64, B=1, full sky")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"{'backend':<11} {'nside':>5} {'J':>2} {'eval med/min (s)':>18} {'value+grad med/min (s)':>24} "
          f"{'first (s)':>9} {'peak RSS (MB)':>13} {'of which imports':>16}")
    for backend in args.backends:
        for nside in args.nside:
            cmd = [sys.executable, __file__, "--case", backend, str(nside), "--kernel", str(args.kernel),
                   "--norient", str(args.norient), "--reps", str(args.reps), "--warmup", str(args.warmup),
                   "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{backend:<11} {nside:>5}  failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(lines[-1][7:])
            print(f"{backend:<11} {nside:>5} {r['scales']:>2} {r['eval'][0]:>9.3f}/{r['eval'][1]:<8.3f} "
                  f"{r['vg'][0]:>12.3f}/{r['vg'][1]:<11.3f} {r['first']:>9.2f} {r['rss_mb']:>13.0f} {r['base_mb']:>16.0f}")


if __name__ == "__main__":
    main()
