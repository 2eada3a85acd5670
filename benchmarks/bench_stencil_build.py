"""Cold construction cost of stencil tables and of the torch sparse operators.

    python benchmarks/bench_stencil_build.py              # default cases, 3 fresh processes each
    python benchmarks/bench_stencil_build.py --repeat 1 --kernel 5
    python benchmarks/bench_stencil_build.py --full-nsides 512 1024 --discs 2048:10 --no-disk

Every measurement runs in a fresh Python subprocess with ``FOSCAT_CORE_CACHE_DIR=""`` (no disk
cache) so nothing is reused from an earlier case. Library imports (numpy, healpy, scipy.sparse,
torch, foscat_core) happen before the clock starts; their time is printed once, separately.

Columns, per case (median of --repeat fresh processes):

* ``compute_stencil``: ``foscat_core.stencils.geometry.compute_stencil(Domain(nside, ids), K)``,
  and the peak RSS of that process (imports included: ~100 MB for numpy, healpy and foscat_core,
  ~350 MB with torch; the table itself is G*N*P*4*16 bytes, 576 bytes a cell for K=3, G=1).
* ``SphericalStencil()``: the constructor in another fresh process (cold: it builds the table).
* ``.operators()``: then the torch sparse operators (CSR + transpose, as embedding_bag tables).
* ``disk load``: ``SphericalStencil()`` in a fresh process whose disk cache holds the table.
* ``peak RSS`` (last column): the largest resident size of the operators process.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DISC_CENTRE_DEG = (45.0, 30.0)  # (lon, lat) of the disc centre


def case_ids(case):
    """NESTED cell ids of a case, or None for the full sky."""
    if case["kind"] == "full":
        return None
    import healpy as hp
    import numpy as np

    lon, lat = DISC_CENTRE_DEG
    vec = hp.ang2vec(lon, lat, lonlat=True)
    return hp.query_disc(case["nside"], vec, np.radians(case["radius"]), nest=True).astype(np.int64)


def child(spec):
    """Run one measurement in this (fresh) process; print a JSON line."""
    t0 = time.perf_counter()
    import healpy  # noqa: F401
    import numpy  # noqa: F401
    import scipy.sparse  # noqa: F401  (the torch backend imports it lazily in operators())
    import torch  # noqa: F401

    import foscat_core as fc
    from foscat_core.stencils.geometry import compute_stencil

    fc.get_backend("torch")
    t_import = time.perf_counter() - t0
    fc.clear_memory_cache()
    ids = case_ids(spec["case"])
    k = spec["kernel"]
    out = {"import": t_import}
    if spec["what"] == "compute_stencil":
        t0 = time.perf_counter()
        index, _ = compute_stencil(fc.Domain(spec["case"]["nside"], ids), k)
        out["compute_stencil"] = time.perf_counter() - t0
        out["n_cells"] = int(index.shape[1])
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:  # "operators" (cold table) or "disk" (table from the disk cache)
        t0 = time.perf_counter()
        st = fc.SphericalStencil(spec["case"]["nside"], k, cell_ids=ids, backend="torch", dtype="float32")
        out["init"] = time.perf_counter() - t0
        if spec["what"] == "operators":
            t0 = time.perf_counter()
            st.operators()
            out["operators"] = time.perf_counter() - t0
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def run_child(spec, cache_dir=""):
    env = {**os.environ, "FOSCAT_CORE_CACHE_DIR": cache_dir}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def median(results, key):
    return statistics.median(r[key] for r in results)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement (median)")
    p.add_argument("--full-nsides", type=int, nargs="*", default=[64, 128, 256])
    p.add_argument("--discs", nargs="*", default=["256:30", "1024:30", "2048:10"],
                   help="regional cases, NSIDE:RADIUS_DEG each (hp.query_disc)")
    p.add_argument("--no-disk", action="store_true", help="skip the disk-cache load column")
    p.add_argument("--no-operators", action="store_true", help="skip the SphericalStencil() and .operators() columns")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return

    import numpy as np
    import torch

    cases = [{"kind": "full", "nside": n} for n in args.full_nsides]
    cases += [{"kind": "disc", "nside": int(n), "radius": float(r)} for n, r in (d.split(":") for d in args.discs)]
    print("=" * 100)
    print(f"bench_stencil_build: cold stencil tables and torch operators, K={args.kernel}, "
          f"median of {args.repeat} fresh process(es) per cell")
    print(f"machine : {platform.machine()}, {os.cpu_count()} logical cores; python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"discs   : centred at lon {DISC_CENTRE_DEG[0]:g}, lat {DISC_CENTRE_DEG[1]:g} (hp.query_disc, nest=True)")
    print("=" * 100)
    head = (f"{'case':<22s}{'cells':>10s}{'compute_stencil':>17s}{'peak RSS':>11s}{'SphericalStencil()':>20s}"
            f"{'.operators()':>14s}{'disk load':>11s}{'peak RSS':>11s}")
    print(head)
    print("-" * len(head))
    imports = []
    for case in cases:
        spec = {"case": case, "kernel": args.kernel}
        cs = [run_child({**spec, "what": "compute_stencil"}) for _ in range(args.repeat)]
        ops = [] if args.no_operators else [run_child({**spec, "what": "operators"}) for _ in range(args.repeat)]
        disk = "-"
        if not (args.no_disk or args.no_operators):
            with tempfile.TemporaryDirectory() as tmp:
                run_child({**spec, "what": "disk"}, tmp)  # populate the disk cache
                loads = [run_child({**spec, "what": "disk"}, tmp) for _ in range(args.repeat)]
            disk = f"{median(loads, 'init') * 1e3:8.0f} ms"
        imports += [r["import"] for r in cs + ops]
        label = f"full sky nside {case['nside']}" if case["kind"] == "full" else \
            f"disc {case['radius']:g}deg nside {case['nside']}"
        built = (f"{median(ops, 'init') * 1e3:>17.0f} ms{median(ops, 'operators') * 1e3:>11.0f} ms" if ops
                 else f"{'-':>20s}{'-':>14s}")
        print(f"{label:<22s}{cs[0]['n_cells']:>10d}{median(cs, 'compute_stencil') * 1e3:>14.0f} ms"
              f"{median(cs, 'maxrss_mb'):>8.0f} MB{built}{disk:>11s}"
              + (f"{median(ops, 'maxrss_mb'):>8.0f} MB" if ops else f"{'-':>11s}"), flush=True)
    print("-" * len(head))
    print(f"(not included above) imports of numpy, healpy, scipy.sparse, torch, foscat_core in a fresh process: "
          f"median {statistics.median(imports) * 1e3:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
