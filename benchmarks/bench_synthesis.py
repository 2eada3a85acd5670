"""Time the L-BFGS-B synthesis loop: milliseconds per iteration and the loop's own overhead.

    python benchmarks/bench_synthesis.py                    # nside 16, 32, 64; torch and TensorFlow
    python benchmarks/bench_synthesis.py --nsides 32 --iters 100 --no-tf

The loss is the one of ``examples/synthesis_moments.py``: pixel moments plus the variance of
three 3x3 stencil derivative filters. For each backend and nside it prints

* ``fwd+grad``: median time of one ``backend.value_and_grad`` of the loss alone (the floor);
* ``per eval``: median time of one evaluation as the synthesis does it (float64 host vector to
  a tensor, value and gradient, back to the host) -- the difference to ``fwd+grad`` is the loop's
  overhead;
* ``per iter``: wall time of ``Synthesis.run`` divided by the iterations done (an L-BFGS-B
  iteration costs one evaluation or a few, when its line search backtracks).

Timings depend on the machine and on how busy it is: compare numbers within one run only.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from synthesis_moments import Moments, moment_loss  # noqa: E402

from foscat_core.synthesis import Loss, Synthesis  # noqa: E402
from _timing import median_ms  # noqa: E402


def bench(backend, nside, iters, reps):
    npix = 12 * nside**2
    rng = np.random.default_rng(0)
    stats = Moments(nside, backend)
    bk = stats.backend
    target = stats.numpy(np.exp(rng.normal(size=npix)))
    loss = Loss(moment_loss, stats, target)
    synth = Synthesis([loss], verbose=False)
    x0 = rng.normal(size=npix)
    xt = bk.asarray(x0, dtype="float64")
    floor = median_ms(lambda: bk.value_and_grad(loss.eval, xt), reps)
    per_eval = median_ms(lambda: synth._value_and_grad(x0.copy(), x0.shape), reps)
    t0 = time.perf_counter()
    synth.run(x0, NUM_EPOCHS=iters, factr=1.0)
    wall = time.perf_counter() - t0
    done = len(synth.get_history()) - 1
    print(f"{backend:>10} {nside:6d} {npix:8d} {floor:10.2f} {per_eval:10.2f} {1e3 * wall / max(done, 1):10.2f} "
          f"{done:6d} {synth.get_history()[-1]:12.3e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsides", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-tf", action="store_true")
    args = parser.parse_args(argv)
    backends = ["torch"] + ([] if args.no_tf else ["tensorflow"])
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(f"{'backend':>10} {'nside':>6} {'cells':>8} {'fwd+grad':>10} {'per eval':>10} {'per iter':>10} "
          f"{'iters':>6} {'final loss':>12}")
    print(f"{'':>10} {'':>6} {'':>8} {'ms':>10} {'ms':>10} {'ms':>10}")
    for backend in backends:
        for nside in args.nsides:
            bench(backend, nside, args.iters, args.reps)


if __name__ == "__main__":
    main()
