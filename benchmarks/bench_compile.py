"""torch.compile and torch.export of the networks: compile time, eager vs compiled speed.

    python benchmarks/bench_compile.py                     # HealpixUNet, disc nside 64, B=8, 6 -> [16, 32, 64]
    python benchmarks/bench_compile.py --net cnn --reps 5 --threads 1
    python benchmarks/bench_compile.py --nside 16 --reps 3 # quick

Prints, for one network on a 30 degree disc around (theta=pi/2, phi=0):

* graph breaks counted by ``torch._dynamo.explain`` (0 is the target);
* the first call of ``torch.compile(net, fullgraph=True)`` (trace + Inductor code generation;
  Inductor's on-disk cache makes later processes faster: ``--fresh-cache`` measures a cold one);
* median forward (evaluation mode, no gradient) and training step (forward, backward, Adam)
  times, eager and compiled, and the largest difference between their outputs;
* ``torch.export.export`` time, and that the network still runs eagerly afterwards.

Medians after one warm-up call; the machine is shared, so compare figures of one run only.
"""

import argparse
import os
import platform
import tempfile
import time
from _timing import median_ms


def build(args, torch):
    import healpy as hp
    import numpy as np

    from foscat_core.nn import CNN, HealpixUNet

    ids = hp.query_disc(args.nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(30.0), nest=True)
    cls = {"unet": HealpixUNet, "cnn": CNN}[args.net]
    net = cls(args.nside, 6, args.chanlist, cell_ids=ids, backend="torch", device="cpu", seed=0)
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(args.batch, 6, ids.size)).astype("float32"))
    y = torch.as_tensor(np.random.default_rng(1).normal(size=(args.batch, 1, ids.size)).astype("float32"))
    return net, x, y


def train_step(torch, model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=["unet", "cnn"], default="unet")
    p.add_argument("--nside", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--chanlist", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before building")
    p.add_argument("--fresh-cache", action="store_true", help="an empty Inductor cache (cold compile time)")
    args = p.parse_args()
    if args.fresh_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
        os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "0"
    import torch
    import torch._dynamo

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"bench_compile: {args.net} on a 30 deg disc, nside {args.nside}, B={args.batch}, 6 -> {args.chanlist}, "
          f"float32, CPU")
    print(f"machine: {platform.machine()} {platform.platform()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; reps {args.reps} (median)")

    t0 = time.perf_counter()
    net, x, y = build(args, torch)
    print(f"  build (stencils, operators, tables)       {1e3 * (time.perf_counter() - t0):9.1f} ms   "
          f"({x.shape[2]} cells)")

    explained = torch._dynamo.explain(net)(x)
    print(f"  graph breaks (torch._dynamo.explain)      {explained.graph_break_count:9d}      "
          f"({explained.graph_count} graph)")
    torch._dynamo.reset()

    # forward, evaluation mode, no gradient
    net.eval()
    compiled = torch.compile(net, fullgraph=True)
    with torch.no_grad():
        t0 = time.perf_counter()
        y_c = compiled(x)
        first_fwd = time.perf_counter() - t0
        y_e = net(x)
        eager_fwd = median_ms(lambda: net(x), args.reps)
        comp_fwd = median_ms(lambda: compiled(x), args.reps)
    fwd_diff = float((y_c - y_e).abs().max())

    # training step (forward, backward, Adam): compiled module, eager optimiser
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    eager_step = median_ms(train_step(torch, net, opt, x, y), args.reps)
    compiled_train = torch.compile(net, fullgraph=True)
    step_c = train_step(torch, compiled_train, opt, x, y)
    t0 = time.perf_counter()
    step_c()
    first_step = time.perf_counter() - t0
    comp_step = median_ms(step_c, args.reps)
    grad_diff = _grad_difference(torch, net, compiled_train, x, y)

    print(f"  compile, first forward call               {first_fwd:9.1f} s")
    print(f"  compile, first training-step call         {first_step:9.1f} s")
    print(f"  forward        eager {eager_fwd:8.1f} ms   compiled {comp_fwd:8.1f} ms   "
          f"x {comp_fwd / eager_fwd:.2f}   max |diff| {fwd_diff:.1e}")
    print(f"  training step  eager {eager_step:8.1f} ms   compiled {comp_step:8.1f} ms   "
          f"x {comp_step / eager_step:.2f}   max |grad diff| {grad_diff:.1e}")

    net.eval()
    t0 = time.perf_counter()
    exported = torch.export.export(net, (x,))
    export_s = time.perf_counter() - t0
    with torch.no_grad():
        after = float((net(x) - exported.module()(x)).abs().max())
    print(f"  torch.export.export                       {export_s:9.1f} s    eager after export vs "
          f"exported: max |diff| {after:.1e}")


def _grad_difference(torch, net, compiled, x, y):
    grads = []
    for model in (net, compiled):
        net.zero_grad(set_to_none=True)
        torch.mean((model(x) - y) ** 2).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    return max(float((a - b).abs().max()) for a, b in zip(*grads))


if __name__ == "__main__":
    main()
