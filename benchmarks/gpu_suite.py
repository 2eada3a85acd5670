"""GPU benchmark suite (runs on whatever device is present; ``--device cpu`` to try it here).

    python benchmarks/gpu_suite.py                     # cuda when torch sees one, else the CPU
    python benchmarks/gpu_suite.py --device cpu --quick

torch only, float32, batch 1, K=3, median of ``--reps`` timed calls after warm-up (CUDA synchronised
around each call):

* ``SphericalStencil.conv`` forward and backward (input and weights requiring grad; the backward
  time is fwd+bwd minus fwd) at nside 64, 128, 256 with 64 and 256 channels (C -> C);
* ``torch.nn.functional.conv2d`` on an image of the same pixel count, same channels (the planar
  baseline, measured in the same run);
* a ``HealpixUNet`` training step (Adam) at each nside, chanlist [64, 128, 256], batch 1;
* scattering value+gradient (``funct(KERNELSZ=3, NORIENT=4)``, float32) at each nside.

The "per 64,800 pts" column scales each conv time to the 1-degree grid (64,800 points) used by
torch-harmonics' published DISCO table — quoted from its README (H100, 64 channels, 3x3):
0.37 ms forward, 0.44 ms backward. Only the figures of one run are comparable with each other.
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
GRID_1DEG = 64_800


def timer(torch, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def median_ms(fn, reps, warmup=2):
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)

    return median_ms


def image_shape(npix):
    h = int(npix**0.5)
    while npix % h:
        h -= 1
    return h, npix // h


def conv_rows(torch, fc, device, nsides, channels, reps, median_ms):
    import torch.nn.functional as F

    rows = []
    for nside in nsides:
        npix = 12 * nside * nside
        st = fc.SphericalStencil(nside, 3, backend=fc.get_backend("torch", str(device)), dtype="float32")
        st.operators()
        h, w_img = image_shape(npix)
        for c in channels:
            gen = torch.Generator(device="cpu").manual_seed(0)
            x = torch.randn(1, c, npix, generator=gen).to(device).requires_grad_(True)
            w = (torch.randn(c, c, 9, generator=gen) / (9 * c) ** 0.5).to(device).requires_grad_(True)
            xi = torch.randn(1, c, h, w_img, generator=gen).to(device).requires_grad_(True)
            wi = (torch.randn(c, c, 3, 3, generator=gen) / (9 * c) ** 0.5).to(device).requires_grad_(True)

            def fwd(f, *a):
                def run():
                    with torch.no_grad():
                        f(*a)
                return run

            def fwd_bwd(f, *a):
                def run():
                    out = f(*a)
                    out.backward(torch.ones_like(out))
                return run

            sphere = (lambda x_, w_: st.conv(x_, w_))
            plane = (lambda x_, w_: F.conv2d(x_, w_, padding=1))
            f_s, fb_s = median_ms(fwd(sphere, x, w), reps), median_ms(fwd_bwd(sphere, x, w), reps)
            f_p, fb_p = median_ms(fwd(plane, xi, wi), reps), median_ms(fwd_bwd(plane, xi, wi), reps)
            rows.append((nside, npix, c, f_s, fb_s - f_s, f_p, fb_p - f_p))
    return rows


def unet_ms(torch, device, nside, reps, median_ms):
    from foscat_core.nn import HealpixUNet

    net = HealpixUNet(nside, 1, [64, 128, 256], backend="torch", device=str(device))
    opt = net.fw.optimizer(net, "adam", 1e-3, 0.0, 0.0)
    step = net.fw.trainer(net, net.default_loss(), opt)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(1, 1, 12 * nside * nside, generator=gen).to(device)
    return median_ms(lambda: step(x, x, None), reps)


def scattering_ms(torch, device, nside, reps, median_ms):
    import foscat_core as fc
    from foscat_core.scattering import funct

    op = funct(KERNELSZ=3, NORIENT=4, all_type="float32", backend=fc.get_backend("torch", str(device)))
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(12 * nside * nside, generator=gen).to(device)
    ref = op.eval(x * 1.1)
    bk = op.backend

    def run():
        bk.value_and_grad(lambda u: op.reduce_distance(op.eval(u), ref), x)

    return median_ms(run, reps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--quick", action="store_true", help="nside 64 and 128, 64 channels only (a CPU try-out)")
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args(argv)
    import torch

    import foscat_core as fc

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fc.get_backend("torch", str(device))  # a missing device is a ValueError here, before any work
    nsides = [64, 128] if args.quick else [64, 128, 256]
    channels = [64] if args.quick else [64, 256]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"gpu_suite on {device} ({name}); torch {torch.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPU cores; float32, batch 1, K=3, median of {args.reps}")
    median_ms = timer(torch, device)
    print(f"\n{'nside':>5} {'cells':>8} {'C':>4} | {'sphere fwd':>10} {'bwd':>8} | {'conv2d fwd':>10} {'bwd':>8} | "
          f"{'per 64,800 pts: fwd':>19} {'bwd':>7}   (ms)")
    for nside, npix, c, f_s, b_s, f_p, b_p in conv_rows(torch, fc, device, nsides, channels, args.reps, median_ms):
        scale = GRID_1DEG / npix
        print(f"{nside:5d} {npix:8d} {c:4d} | {f_s:10.2f} {b_s:8.2f} | {f_p:10.2f} {b_p:8.2f} | "
              f"{f_s * scale:19.3f} {b_s * scale:7.3f}")
    print("torch-harmonics DISCO, quoted from its README (H100, 1-degree grid, 64 channels, 3x3): "
          "0.37 ms forward, 0.44 ms backward")
    print(f"\n{'nside':>5} | {'U-Net step [64,128,256]':>24} | {'scattering value+grad':>22}   (ms)")
    for nside in nsides:
        print(f"{nside:5d} | {unet_ms(torch, device, nside, max(3, args.reps // 3), median_ms):24.1f} | "
              f"{scattering_ms(torch, device, nside, max(3, args.reps // 3), median_ms):22.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
