"""Time SphericalStencil.conv against a planar conv2d with the same pixel count.

    python benchmarks/bench_conv.py                       # nside 64, B=8, 32->32 channels, K=3
    python benchmarks/bench_conv.py --threads 1 --reps 20
    python benchmarks/bench_conv.py --no-tf --no-jax      # torch only
    python benchmarks/bench_conv.py --tuned-malloc        # glibc keeps freed memory (no page faults)

The reference is ``torch.nn.functional.conv2d`` on an image of 12*nside**2 pixels
(e.g. 192 x 256 for nside 64), C -> C channels, 3x3 kernel, padding=1. "fwd" runs without
autograd; "fwd+bwd" has the input and the weights requiring grad and calls
``out.backward(torch.ones_like(out))``. Reported: median (and min) over --reps timed runs after
--warmup untimed ones, the minor page faults per call, and the ratio to the reference. Stencil
table construction is outside the timed region; its cold cost
(memory cache cleared, disk cache off) is printed separately.
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import time

# Disk cache off before foscat_core reads it, so the build below is really cold.
os.environ["FOSCAT_CORE_CACHE_DIR"] = ""
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF start-up chatter out of the table


def image_shape(npix):
    """(H, W) with H * W == npix, as square as possible (192 x 256 for 49152)."""
    h = int(npix**0.5)
    while npix % h:
        h -= 1
    return h, npix // h


# glibc malloc tuned to keep freed memory instead of handing it back to the kernel: large
# temporaries then stop costing page faults on every call (--tuned-malloc re-runs with these).
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736",
                "MALLOC_TOP_PAD_": "1073741824"}


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timeit(fn, reps, warmup):
    """(median s, min s, minor page faults per timed call)."""
    for _ in range(warmup):
        fn()
    times = []
    f0 = minor_faults()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), (minor_faults() - f0) // reps


def fmt(t):
    return f"{t * 1e3:9.1f} ms"


def row(label, res, ref=None):
    med, mn, faults = res
    ratio = f"x{med / ref[0]:5.2f}" if ref is not None else ""
    print(f"  {label:<44s}{fmt(med)}  (min {fmt(mn).strip():>9s}) {faults:7d}   {ratio}")


def table_header():
    print(f"  {'':<44s}{'median':>12s}  {'':15s}{'faults':>8s}   vs ref")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nside", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=32, help="C_in = C_out")
    p.add_argument("--kernel", type=int, default=3, help="stencil side K (conv2d uses the same K)")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (and TF intra-op threads); default: the frameworks' own")
    p.add_argument("--no-tf", action="store_true", help="skip the TensorFlow section")
    p.add_argument("--no-jax", action="store_true", help="skip the JAX section")
    p.add_argument("--tuned-malloc", action="store_true",
                   help="re-run under glibc malloc settings that never return memory to the kernel "
                        "(removes the page-fault cost of large temporaries; see README)")
    return p.parse_args(argv)


def bench_torch(args):
    import torch
    import torch.nn.functional as F

    import foscat_core as fc

    nside, b, c, k = args.nside, args.batch, args.channels, args.kernel
    npix = 12 * nside * nside
    h, w_img = image_shape(npix)
    fc.get_backend("torch")  # backend object (and array_api_compat import) outside the build timing
    t0 = time.perf_counter()
    import scipy.sparse  # noqa: F401  (imported lazily by the first .operators(): a one-off process cost)

    t_scipy = time.perf_counter() - t0

    fc.clear_memory_cache()
    t0 = time.perf_counter()
    st = fc.SphericalStencil(nside, k, backend="torch", dtype="float32")
    t_table = time.perf_counter() - t0
    t0 = time.perf_counter()
    st.operators()
    t_ops = time.perf_counter() - t0
    print(f"cold build (nside={nside}, K={k}, full sky, disk cache off):")
    print(f"  stencil table (SphericalStencil(...))      {fmt(t_table)}")
    print(f"  torch sparse operators (.operators())      {fmt(t_ops)}")
    print(f"  (not included: first import of scipy.sparse {fmt(t_scipy).strip()})")
    print()

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, npix, generator=gen)
    w = torch.randn(c, c, k * k, generator=gen) / (c * k * k) ** 0.5
    xi = torch.randn(b, c, h, w_img, generator=gen)
    wi = torch.randn(c, c, k, k, generator=gen) / (c * k * k) ** 0.5
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    xig, wig = xi.clone().requires_grad_(True), wi.clone().requires_grad_(True)
    pad = k // 2

    def st_fwd():
        with torch.no_grad():
            st.conv(x, w)

    def st_fwd_bwd():
        xg.grad = wg.grad = None
        out = st.conv(xg, wg)
        out.backward(torch.ones_like(out))

    def c2d_fwd():
        with torch.no_grad():
            F.conv2d(xi, wi, padding=pad)

    def c2d_fwd_bwd():
        xig.grad = wig.grad = None
        out = F.conv2d(xig, wig, padding=pad)
        out.backward(torch.ones_like(out))

    # For information: the same conv2d in channels_last memory format (oneDNN's preferred one).
    xcl = xi.contiguous(memory_format=torch.channels_last)
    wcl = wi.contiguous(memory_format=torch.channels_last)
    xclg, wclg = xcl.clone().requires_grad_(True), wcl.clone().requires_grad_(True)

    def cl_fwd():
        with torch.no_grad():
            F.conv2d(xcl, wcl, padding=pad)

    def cl_fwd_bwd():
        xclg.grad = wclg.grad = None
        out = F.conv2d(xclg, wclg, padding=pad)
        out.backward(torch.ones_like(out))

    assert st.conv(x, w).shape == (b, c, npix)
    print(f"torch (threads={torch.get_num_threads()}): x ({b}, {c}, {npix}) vs conv2d input ({b}, {c}, {h}, {w_img}), "
          f"kernel {k}x{k}, {c}->{c} channels, float32")
    res = {}
    res["st_f"] = timeit(st_fwd, args.reps, args.warmup)
    res["c2d_f"] = timeit(c2d_fwd, args.reps, args.warmup)
    res["st_fb"] = timeit(st_fwd_bwd, args.reps, args.warmup)
    res["c2d_fb"] = timeit(c2d_fwd_bwd, args.reps, args.warmup)
    res["cl_f"] = timeit(cl_fwd, args.reps, args.warmup)
    res["cl_fb"] = timeit(cl_fwd_bwd, args.reps, args.warmup)
    table_header()
    row("conv2d fwd (NCHW) [ref]", res["c2d_f"])
    row("SphericalStencil.conv fwd", res["st_f"], res["c2d_f"])
    row("conv2d fwd+bwd (NCHW) [ref]", res["c2d_fb"])
    row("SphericalStencil.conv fwd+bwd", res["st_fb"], res["c2d_fb"])
    row("(info) conv2d fwd, channels_last", res["cl_f"], res["c2d_f"])
    row("(info) conv2d fwd+bwd, channels_last", res["cl_fb"], res["c2d_fb"])
    print(f"  ==> ratio ours/conv2d(NCHW), medians: fwd {res['st_f'][0] / res['c2d_f'][0]:.2f}, "
          f"fwd+bwd {res['st_fb'][0] / res['c2d_fb'][0]:.2f}   "
          f"(vs channels_last: fwd {res['st_f'][0] / res['cl_f'][0]:.2f}, "
          f"fwd+bwd {res['st_fb'][0] / res['cl_fb'][0]:.2f})")
    print("  faults = minor page faults per call (fresh memory from the kernel; costly on VMs)")
    print()
    return res


def bench_tf(args):
    import tensorflow as tf

    import foscat_core as fc

    nside, b, c, k = args.nside, args.batch, args.channels, args.kernel
    npix = 12 * nside * nside
    h, w_img = image_shape(npix)
    st = fc.SphericalStencil(nside, k, backend="tensorflow", dtype="float32")  # table from the memory cache
    st.operators()

    rng = tf.random.Generator.from_seed(0)
    x = rng.normal((b, c, npix))
    w = rng.normal((c, c, k * k)) / (c * k * k) ** 0.5
    xi = rng.normal((b, h, w_img, c))  # NHWC: TF's native CPU layout
    wi = rng.normal((k, k, c, c)) / (c * k * k) ** 0.5

    def fwd(x, w):
        return st.conv(x, w)

    # The output is returned with the gradients: otherwise tf.function prunes the forward
    # product, which a linear op's gradients do not need.
    def fwd_bwd(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            tape.watch(w)
            out = st.conv(x, w)
        return [out, *tape.gradient(out, [x, w], output_gradients=tf.ones_like(out))]

    def c2d(x, w):
        return tf.nn.conv2d(x, w, 1, "SAME")

    def c2d_fwd_bwd(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            tape.watch(w)
            out = tf.nn.conv2d(x, w, 1, "SAME")
        return [out, *tape.gradient(out, [x, w], output_gradients=tf.ones_like(out))]

    # .numpy() on a small slice forces completion without timing a full copy.
    def run(fn, *a):
        return lambda: tf.nest.map_structure(lambda t: t[..., :1].numpy(), fn(*a))

    fwd_fn, fwd_bwd_fn = tf.function(fwd), tf.function(fwd_bwd)
    c2d_fn, c2d_fwd_bwd_fn = tf.function(c2d), tf.function(c2d_fwd_bwd)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    print(f"tensorflow {tf.__version__} (intra-op threads={threads}), same sizes; conv2d reference is "
          f"tf.nn.conv2d NHWC ({b}, {h}, {w_img}, {c}), padding SAME")
    res = {
        "c2d_f": timeit(run(c2d_fn, xi, wi), args.reps, args.warmup),
        "c2d_fb": timeit(run(c2d_fwd_bwd_fn, xi, wi), args.reps, args.warmup),
        "st_f_eager": timeit(run(fwd, x, w), args.reps, args.warmup),
        "st_fb_eager": timeit(run(fwd_bwd, x, w), args.reps, args.warmup),
        "st_f_fn": timeit(run(fwd_fn, x, w), args.reps, args.warmup),
        "st_fb_fn": timeit(run(fwd_bwd_fn, x, w), args.reps, args.warmup),
    }
    table_header()
    row("tf.nn.conv2d fwd (tf.function)", res["c2d_f"])
    row("SphericalStencil.conv fwd, eager", res["st_f_eager"], res["c2d_f"])
    row("SphericalStencil.conv fwd, tf.function", res["st_f_fn"], res["c2d_f"])
    row("tf.nn.conv2d fwd+bwd (tf.function)", res["c2d_fb"])
    row("SphericalStencil.conv fwd+bwd, eager", res["st_fb_eager"], res["c2d_fb"])
    row("SphericalStencil.conv fwd+bwd, tf.function", res["st_fb_fn"], res["c2d_fb"])
    print()
    return res


def main(argv=None):
    args = parse_args(argv)
    if args.tuned_malloc and any(os.environ.get(k) != v for k, v in TUNED_MALLOC.items()):
        # glibc reads these at start-up only: re-execute this script with them set.
        argv = sys.argv if argv is None else [sys.argv[0], *argv]
        os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **TUNED_MALLOC})
    import numpy as np
    import torch

    import foscat_core as fc

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    print("=" * 78)
    print("bench_conv: SphericalStencil.conv vs conv2d (CPU)")
    print(f"machine : {platform.machine()} {platform.processor() or platform.platform()}, "
          f"{os.cpu_count()} logical cores ({affinity} usable)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"foscat_core {fc.__version__}")
    malloc = "tuned (MALLOC_MMAP_THRESHOLD_ etc. set)" if all(
        os.environ.get(k) == v for k, v in TUNED_MALLOC.items()) else "default glibc settings"
    print(f"threads : torch {torch.get_num_threads()}; malloc: {malloc}")
    print(f"sizes   : nside={args.nside} (N={12 * args.nside**2}), batch={args.batch}, "
          f"channels={args.channels}->{args.channels}, K={args.kernel}, reps={args.reps}, warmup={args.warmup}")
    print("=" * 78)
    bench_torch(args)
    if not args.no_tf:
        try:
            import tensorflow as tf
        except ImportError:
            print("tensorflow not installed: TF section skipped")
        else:
            if args.threads is not None:
                tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            bench_tf(args)
    if not args.no_jax:
        import importlib.util

        if importlib.util.find_spec("jax") is None:
            print("jax not installed: JAX section skipped")
        else:
            from _conv_jax import bench_jax

            bench_jax(args, timeit, row, table_header, image_shape, fmt)


if __name__ == "__main__":
    sys.exit(main())
