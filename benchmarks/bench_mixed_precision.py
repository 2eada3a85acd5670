"""Mixed precision on torch (CPU): float32 vs bfloat16 autocast vs a network built in bfloat16.

    python benchmarks/bench_mixed_precision.py              # nside 64, 3 repetitions
    python benchmarks/bench_mixed_precision.py --nside 32 --reps 5

Cases: one SphericalConv product (32 -> 32 channels, K=3, batch 4, the full sky) forward and
forward + backward; a HealpixUNet training step (6 channels, chanlist [16, 32, 64], batch 4, a
30 degree disc, Adam) as in bench_unet. Modes: "float32"; "autocast" (float32 parameters, the
forward under ``torch.autocast("cpu", torch.bfloat16)``); "bf16 net" (the same weights cast with
``.bfloat16()``, every tensor bfloat16). Printed: the best of ``--reps`` times after one warm-up
(the least disturbed on a shared machine, where medians swing several-fold), and the relative
error of the forward against float32 (norm of the difference over the norm of the float32
result; the U-Net in evaluation mode, so batch statistics do not enter).
"""

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _timing import timings  # noqa: E402



def best_ms(fn, reps):
    return 1e3 * min(timings(fn, reps))


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def bench_conv(torch, nside, reps):
    import foscat_core as fc

    gen = torch.Generator().manual_seed(0)
    st32 = fc.SphericalStencil(nside, 3, backend="torch")
    x = torch.randn(4, 32, st32.n_cells, generator=gen)
    w = torch.randn(32, 32, 9, generator=gen) / 17.0
    ref = st32.conv(x, w)
    cases = {"float32": (st32, x, w, False), "autocast": (st32, x, w, True),
             "bf16 net": (st32.with_dtype("bfloat16"), x.bfloat16(), w.bfloat16(), False)}
    for mode, (st, xm, wm, amp) in cases.items():
        xg, wg = xm.clone().requires_grad_(True), wm.clone().requires_grad_(True)

        def fwd(st=st, xm=xm, wm=wm, amp=amp):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                return st.conv(xm, wm)

        def fwd_bwd(st=st, xg=xg, wg=wg, amp=amp):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                y = st.conv(xg, wg)
            y.float().square().mean().backward()

        print(f"conv nside {nside} 32->32 B=4  {mode:9s} fwd {best_ms(fwd, reps):8.1f} ms  "
              f"fwd+bwd {best_ms(fwd_bwd, reps):8.1f} ms  rel err {rel(fwd(), ref):.1e}", flush=True)


def bench_unet(torch, nside, reps):
    import healpy as hp
    import numpy as np

    from foscat_core.nn import HealpixUNet

    ids = hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(30.0), nest=True)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, len(ids), generator=gen)
    y = torch.randn(4, 1, len(ids), generator=gen)
    net32 = HealpixUNet(nside, 6, [16, 32, 64], cell_ids=ids, backend="torch").eval()
    with torch.no_grad():
        ref = net32(x)
    net16 = copy.deepcopy(net32).bfloat16()
    cases = {"float32": (net32, x, y, False), "autocast": (copy.deepcopy(net32), x, y, True),
             "bf16 net": (net16, x.bfloat16(), y.bfloat16(), False)}
    for mode, (net, xm, ym, amp) in cases.items():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            err = rel(net.eval()(xm), ref)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)

        def step(net=net, xm=xm, ym=ym, amp=amp, opt=opt):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = (net(xm).float() - ym.float()).square().mean()
            loss.backward()
            opt.step()

        print(f"U-Net step nside {nside} disc ({len(ids)} cells) B=4  {mode:9s} {best_ms(step, reps):8.1f} ms  "
              f"forward rel err {err:.1e}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nside", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_conv(torch, args.nside, args.reps)
    bench_unet(torch, args.nside, args.reps)


if __name__ == "__main__":
    main()
