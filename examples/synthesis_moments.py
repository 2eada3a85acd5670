"""Synthesis from white noise towards the statistics of a non-Gaussian HEALPix map.

Run:  python examples/synthesis_moments.py [--backend torch|tensorflow] [--nside 16] [--epochs 300]

The statistics are simple and differentiable: the pixel mean, variance, skewness and kurtosis and
the variance of three local derivative filters (east, north, Laplacian) applied with the oriented
3x3 stencil convolution. The loss stays in backend operations on ``x`` (never ``x.numpy()``), so
the gradient of the loss reaches the map and L-BFGS-B can move it. Takes a few seconds.
"""

import argparse

import healpy as hp
import numpy as np

import foscat_core as fc
from foscat_core.synthesis import Loss, Synthesis


class Moments:
    """Differentiable statistics of a map of shape (N,), written once for every backend."""

    def __init__(self, nside, backend):
        self.stencil = fc.SphericalStencil(nside, 3, backend=backend, dtype="float64")
        self.backend = self.stencil.backend  # what makes this object a valid Loss ``scat_op``
        self.n_cells = 12 * nside * nside
        w = np.zeros((1, 3, 9))  # taps p = i*3 + j, row i from north to south, column j west to east
        w[0, 0, 5], w[0, 0, 3] = 1.0, -1.0
        w[0, 1, 1], w[0, 1, 7] = 1.0, -1.0
        w[0, 2, [1, 3, 5, 7]], w[0, 2, 4] = 1.0, -4.0
        self.filters = w
        self.names = ["mean", "variance", "skewness", "kurtosis", "var d/east", "var d/north", "var laplacian"]

    def __call__(self, x):
        xp = self.backend.xp
        mean = xp.mean(x)
        c = x - mean
        var = xp.mean(c**2)
        deriv = self.stencil.conv(xp.reshape(x, (1, 1, self.n_cells)), self.filters)
        return [mean, var, xp.mean(c**3) / var**1.5, xp.mean(c**4) / var**2] + [
            xp.mean(deriv[0, k] ** 2) for k in range(3)
        ]

    def numpy(self, x):
        bk = self.backend
        return np.array([float(bk.to_numpy(s)) for s in self(bk.asarray(x, dtype="float64"))])


def moment_loss(x, scat_op, args):
    """Squared distance of the statistics of ``x`` to the target ``args[0]`` (a backend scalar)."""
    (target,) = args
    terms = [(s - float(t)) ** 2 for s, t in zip(scat_op(x), target)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow", "jax"])
    parser.add_argument("--nside", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    nside, npix = args.nside, 12 * args.nside**2
    rng = np.random.default_rng(0)
    # Target: exp of a smoothed Gaussian field (log-normal, skewed), NESTED, zero mean, unit variance.
    smooth = hp.smoothing(rng.normal(size=npix), fwhm=np.radians(8.0))
    target_map = hp.reorder(np.exp(smooth / smooth.std()), r2n=True)
    target_map = (target_map - target_map.mean()) / target_map.std()

    stats = Moments(nside, args.backend)
    target = stats.numpy(target_map)
    loss = Loss(moment_loss, stats, target, name="moments")
    synthesis = Synthesis([loss], verbose=not args.quiet)
    start = rng.normal(size=npix)
    result = synthesis.run(start, NUM_EPOCHS=args.epochs, EVAL_FREQUENCY=50, MESSAGE=f"[{args.backend}] ")

    history = synthesis.get_history()
    print(f"loss {history[0]:.3e} -> {history[-1]:.3e} in {len(history) - 1} iterations")
    print(f"{'statistic':>14} {'white noise':>12} {'target':>12} {'synthesis':>12}")
    for name, a, b, c in zip(stats.names, stats.numpy(start), target, stats.numpy(result)):
        print(f"{name:>14} {a:12.4f} {b:12.4f} {c:12.4f}")
    return result


if __name__ == "__main__":
    main()
