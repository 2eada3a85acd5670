"""How the cost per cell grows with the map: one table over nside, torch on CPU.

    python benchmarks/bench_scaling.py                  # nside 32, 64, 128, 256
    python benchmarks/bench_scaling.py --big            # + nside 512, nside 1024 full-sky build, 10 deg disc at 2048
    python benchmarks/bench_scaling.py --tuned-malloc   # children run with glibc's mmap threshold raised (see below)
    python benchmarks/bench_scaling.py --keep-freed-memory   # children call foscat_core.keep_freed_memory() first

Every cell of the table is one fresh subprocess (its own peak memory), full sky, float32 unless
said, the stencil disk cache off (``FOSCAT_CORE_CACHE_DIR=""``), ``--threads`` torch threads.

* ``conv``: ``SphericalStencil(nside, 3).conv`` forward + backward, B=1, 32 -> 32 channels.
* ``U-Net``: one ``HealpixUNet(nside, 4, [8, 16, 32])`` training step (Adam), batch 1.
* ``scat``: value and gradient of a loss on ``foscat_core.scattering.funct(KERNELSZ=3, NORIENT=4,
  all_type="float64").eval`` (torch, B=1, all scales; the first call, which builds the
  stencils, is not timed).
* ``build``: cold ``SphericalStencil(nside, 3)`` (its K=3, G=1 table: 576 bytes a cell), seconds;
  ``touch``: the seconds the same process then takes to fill as many bytes of fresh memory (what
  the system alone charges for the table's pages: large on a VM whose guest memory is backed
  lazily).

``wall`` / ``cpu``: median wall / CPU (process_time, all threads) microseconds per cell of
``--reps`` calls after one warm-up; on a shared machine CPU time is the steadier of the two.
``MB``: peak resident memory (``ru_maxrss``) minus the resident memory once imports and inputs
are ready, i.e. what the measured work added (torch itself is ~300 MB more).

``--tuned-malloc`` runs the children with bench_conv's ``TUNED_MALLOC`` (``MALLOC_MMAP_THRESHOLD_`` etc.):
glibc otherwise gives every buffer over 32 MB fresh pages from the kernel and returns them on
free, so from nside 256 on each training step page-faults its activations in again.
``--keep-freed-memory`` does the same from inside the process, as a user would: each child calls
``foscat_core.keep_freed_memory()`` before its work.
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

from bench_conv import TUNED_MALLOC

NSIDES = (32, 64, 128, 256)
BIG_BUILDS = ((1024, None), (2048, 10.0))  # (nside, disc radius in degrees or None: full sky)


def _rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _first_touch_s(nbytes, sample=2**29):
    """Seconds this process takes to fill ``nbytes`` of fresh memory (timed on at most ``sample``
    bytes, scaled): the part of a build that is only the system supplying pages for its table."""
    import numpy as np

    size = min(nbytes, sample)
    t0 = time.perf_counter()
    np.ones(size // 8)
    return (time.perf_counter() - t0) * nbytes / size


def _median_times(fn, reps):
    """Median wall and CPU (process, all threads) seconds of ``reps`` calls after one warm-up."""
    fn()  # warm-up: operators, tables, optimiser state
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _disc(nside, radius_deg):
    import healpy as hp
    import numpy as np

    return hp.query_disc(nside, hp.ang2vec(45.0, 30.0, lonlat=True), np.radians(radius_deg), nest=True)


def _workload(what, nside):
    """(function to time, number of cells) of one measurement, inputs ready."""
    import numpy as np
    import torch

    n = 12 * nside * nside
    rng = np.random.default_rng(0)
    if what == "conv":
        from foscat_core import SphericalStencil

        st = SphericalStencil(nside, 3, backend="torch", dtype="float32")
        x = torch.randn(1, 32, n, requires_grad=True)
        w = torch.randn(32, 32, 9, requires_grad=True)
        return lambda: st.conv(x, w).square().sum().backward(), n
    if what == "unet":
        from foscat_core.nn import HealpixUNet

        net = HealpixUNet(nside, 4, [8, 16, 32], backend="torch")
        step = net.fw.trainer(net, net.default_loss(), net.fw.optimizer(net, "adam", 1e-3, 1e-5, 0.0))
        x = net.backend.asarray(rng.normal(size=(1, 4, n)).astype(np.float32))
        y = net.backend.asarray(rng.normal(size=(1, 1, n)).astype(np.float32))
        return lambda: step(x, y, None), n
    from foscat_core.scattering import funct

    op = funct(KERNELSZ=3, NORIENT=4, all_type="float64", backend="torch")
    ref = op.eval(rng.normal(size=(1, n)))
    x = op.backend.asarray(rng.normal(size=(1, n)), dtype="float64")

    def loss(u):
        stat = op.eval(u)
        return stat.reduce_mean_batch((stat - ref) ** 2)

    return lambda: op.backend.value_and_grad(loss, x), n


def child(spec):
    import torch

    import foscat_core  # noqa: F401  (imported before the memory baseline)

    torch.set_num_threads(spec["threads"])
    if spec.get("keep_freed_memory"):
        foscat_core.keep_freed_memory()
    if spec["what"] == "build":
        from foscat_core import SphericalStencil

        ids = None if spec["radius"] is None else _disc(spec["nside"], spec["radius"])
        base = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        st = SphericalStencil(spec["nside"], 3, cell_ids=ids, backend="torch")
        out = {"s": time.perf_counter() - t0, "cpu": time.process_time() - c0, "mb": _peak_mb() - base,
               "cells": st.n_cells}
        return {**out, "touch": _first_touch_s(st.index.nbytes + st.weight.nbytes)}
    fn, n = _workload(spec["what"], spec["nside"])
    base = _rss_mb()
    wall, cpu = _median_times(fn, spec["reps"])
    return {"us": wall * 1e6 / n, "cpu": cpu * 1e6 / n, "mb": _peak_mb() - base}


def run_child(spec, env):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    print(f"  ({spec['what']} nside {spec['nside']} failed, rc {proc.returncode}: "
          f"{proc.stderr.strip().splitlines()[-1:] or ''})", file=sys.stderr)
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--big", action="store_true", help="add nside 512 and the large stencil builds")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tuned-malloc", action="store_true")
    p.add_argument("--keep-freed-memory", action="store_true", help="children call foscat_core.keep_freed_memory()")
    p.add_argument("--only", nargs="+", default=["conv", "unet", "scat", "build"])
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))))
        return
    import torch

    env = {**os.environ, "FOSCAT_CORE_CACHE_DIR": "", **(TUNED_MALLOC if args.tuned_malloc else {})}
    nsides = NSIDES + ((512,) if args.big else ())
    print(f"bench_scaling: {platform.machine()}, {os.cpu_count()} logical cores, python {platform.python_version()}, "
          f"torch {torch.__version__}, {args.threads} thread(s), median of {args.reps}; "
          f"malloc {'tuned' if args.tuned_malloc else 'default'}"
          f"{', keep_freed_memory()' if args.keep_freed_memory else ''}")
    head = f"{'nside':>6s}{'cells':>9s}" + "".join(f" | {name:>19s}" for name in ("conv", "U-Net", "scat", "build"))
    print(head + f"{'':6s}")
    units = " | {:>6s}{:>6s}{:>7s}".format("wall", "cpu", "MB")
    print(f"{'':15s}" + units * 3 + " | {:>6s}{:>6s}{:>7s}{:>6s}".format("s", "cpu s", "MB", "touch"))
    print("-" * (len(head) + 6))
    for nside in nsides:
        row = f"{nside:>6d}{12 * nside * nside:>9d}"
        for what in ("conv", "unet", "scat", "build"):
            spec = {"what": what, "nside": nside, "reps": args.reps, "threads": args.threads, "radius": None,
                    "keep_freed_memory": args.keep_freed_memory}
            r = run_child(spec, env) if what in args.only else None
            if r is None:
                row += " | " + "{:>19s}".format("-")
            elif what == "build":
                row += f" | {r['s']:>6.2f}{r['cpu']:>6.2f}{r['mb']:>7.0f}{r['touch']:>6.2f}"
            else:
                row += f" | {r['us']:>6.2f}{r['cpu']:>6.2f}{r['mb']:>7.0f}"
        print(row, flush=True)
    if args.big and "build" in args.only:
        for nside, radius in BIG_BUILDS:
            r = run_child({"what": "build", "nside": nside, "reps": 1, "threads": args.threads, "radius": radius}, env)
            label = "full sky" if radius is None else f"{radius:g} deg disc"
            if r is not None:
                print(f"cold build nside {nside} {label}: {r['cells']} cells, {r['s']:.2f} s wall, "
                      f"{r['cpu']:.2f} s cpu, "
                      f"peak +{r['mb']:.0f} MB (first touch of that much fresh memory here: ~{r['touch']:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
