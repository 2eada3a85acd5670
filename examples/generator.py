"""A generator network trained on the scattering statistics of one non-Gaussian map, then drawing
new maps in one forward pass each.

Run:  python examples/generator.py [--backend torch|tensorflow] [--nside 16] [--iters 300]
                                   [--quick] [--quiet] [--out DIR]

The target is a lognormal field: a Gaussian map from the CMB spectrum healpy ships (``synfast``),
exponentiated and standardised (skewed, heavy-tailed). ``Generator.fit`` trains a HEALPix decoder
so that every map it draws has the target's scattering statistics (``norm="self"``); then 16
samples are drawn and compared with the target: power in octave bands of ell from 4 to 2 nside
(``healpy.anafast`` on the RING-reordered maps), skewness and excess kurtosis, the mean absolute
correlation between two samples (diversity), and milliseconds per sample. ``--out DIR`` writes
``generator_maps.png`` (target and three samples) and ``generator_statistics.png`` (their power
spectra and pixel histograms against the target's). ``--quick`` is CI-sized (a few seconds).
"""

import argparse
import os
import time
from pathlib import Path

import healpy as hp
import numpy as np

from foscat_core.demo.data import cmb_spectrum
from foscat_core.scattering import funct
from foscat_core.synthesis import Generator


def lognormal_target(nside, seed=0, amplitude=0.5):
    """A standardised lognormal NESTED map: ``exp(amplitude * g / std(g))`` of a CMB-like ``g``."""
    np.random.seed(seed)  # synfast draws from NumPy's global generator
    g = hp.synfast(cmb_spectrum(3 * nside - 1), nside, lmax=3 * nside - 1, new=True)
    x = np.exp(amplitude * g / g.std())
    return hp.reorder((x - x.mean()) / x.std(), r2n=True)


def octave_bands(nside):
    """``[(lo, hi), ...]``: ell in [4, 8), [8, 16), ... up to 2 nside (inclusive in the last)."""
    edges = [4]
    while edges[-1] * 2 < 2 * nside:
        edges.append(edges[-1] * 2)
    edges.append(2 * nside + 1)
    return list(zip(edges[:-1], edges[1:]))


def spectrum(maps, nside):
    """anafast C_ell of NESTED maps (n, N) up to 2 nside, (n, 2 nside + 1)."""
    return np.array([hp.anafast(hp.reorder(m, n2r=True), lmax=2 * nside) for m in np.atleast_2d(maps)])


def band_ratios(maps, target, nside):
    """Per octave band, the samples' mean power over the target's: ``[(lo, hi - 1, ratio), ...]``."""
    cl_s, cl_t = spectrum(maps, nside).mean(axis=0), spectrum(target, nside)[0]
    return [(lo, hi - 1, float(cl_s[lo:hi].sum() / cl_t[lo:hi].sum())) for lo, hi in octave_bands(nside)]


def moments(maps):
    """Skewness and excess kurtosis of each map: two arrays (n,)."""
    maps = np.atleast_2d(maps)
    z = (maps - maps.mean(axis=1, keepdims=True)) / maps.std(axis=1, keepdims=True)
    return (z**3).mean(axis=1), (z**4).mean(axis=1) - 3.0


def mean_abs_corr(maps):
    """Mean |Pearson correlation| over the pairs of distinct maps."""
    c = np.corrcoef(maps)
    return float(np.abs(c[np.triu_indices(len(maps), 1)]).mean())


def ms_per_sample(gen, n=16, repeats=5):
    """Best wall time over ``repeats`` of ``gen.sample(n)`` (one batch of n), per map, in ms."""
    gen.sample(n, seed=0, batch_size=n)  # warm-up (tracing, index tables)
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        gen.sample(n, seed=r + 1, batch_size=n)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / n


def quality(samples, target, nside):
    """The figures the issue asks for, for ``samples`` (n, N) against ``target`` (N,)."""
    skew, kurt = moments(samples)
    t_skew, t_kurt = moments(target)
    corr_target = np.corrcoef(np.vstack([samples, target]))[-1, :-1]
    return {"bands": band_ratios(samples, target, nside),
            "skewness": float(skew.mean()), "target_skewness": float(t_skew[0]),
            "kurtosis": float(kurt.mean()), "target_kurtosis": float(t_kurt[0]),
            "mean_abs_corr": mean_abs_corr(samples),
            "max_abs_corr_with_target": float(np.abs(corr_target).max())}


def print_quality(name, q):
    bands = "  ".join(f"{lo}-{hi}: {r:.2f}" for lo, hi, r in q["bands"])
    print(f"[{name}] band power / target's: {bands}")
    print(f"[{name}] skewness {q['skewness']:.3f} (target {q['target_skewness']:.3f}), excess kurtosis "
          f"{q['kurtosis']:.3f} (target {q['target_kurtosis']:.3f}), mean |corr| between samples "
          f"{q['mean_abs_corr']:.3f}, max |corr| with the target {q['max_abs_corr_with_target']:.3f}")


def figures(out, target, samples, nside):
    import matplotlib.pyplot as plt

    from foscat_core import plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot.show_maps([target, *samples[:3]], nside, titles=["target", "sample 1", "sample 2", "sample 3"], ncols=2)
    paths = [plot.save(fig, out / "generator_maps.png", close=True)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ell = np.arange(2 * nside + 1)
    cl_t, cl_s = spectrum(target, nside)[0], spectrum(samples, nside)
    ax1.loglog(ell[2:], cl_t[2:], "k", lw=2, label="target")
    for i, cl in enumerate(cl_s[:3]):
        ax1.loglog(ell[2:], cl[2:], lw=1, label=f"sample {i + 1}")
    ax1.set_xlabel("ell")
    ax1.set_ylabel("C_ell")
    ax1.legend()
    bins = np.linspace(min(target.min(), samples.min()), max(target.max(), samples.max()), 60)
    ax2.hist(target, bins=bins, density=True, histtype="step", color="k", lw=2, label="target")
    for i, s in enumerate(samples[:3]):
        ax2.hist(s, bins=bins, density=True, histtype="step", lw=1, label=f"sample {i + 1}")
    ax2.set_yscale("log")
    ax2.set_xlabel("pixel value")
    ax2.legend()
    paths.append(plot.save(fig, out / "generator_statistics.png", close=True))
    return [str(p) for p in paths]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow", "jax"])
    parser.add_argument("--nside", type=int, default=None, help="default 16 (8 with --quick)")
    parser.add_argument("--iters", type=int, default=None, help="training steps; default 300 (40 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="maps per training step; default 8 (4 with --quick)")
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", default=None, help="folder for the figures (skipped when not given)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    nside = args.nside or (8 if args.quick else 16)
    iters = args.iters or (40 if args.quick else 300)
    batch = args.batch or (4 if args.quick else 8)
    target = lognormal_target(nside)
    op = funct(KERNELSZ=3, NORIENT=4, all_type="float32", backend=args.backend)
    chanlist = [4, 8, 16] if args.quick else None
    gen = Generator(nside, chanlist=chanlist, backend=args.backend, seed=0)
    print(f"{gen}; target: lognormal, nside {nside}, skewness {moments(target)[0][0]:.2f}")
    history = gen.fit(target, op, n_iter=iters, batch_size=batch, lr=1e-2 if args.quick else 3e-3,
                      verbose=not args.quiet, seed=0)
    samples = gen.sample(16, seed=123)
    numbers = {"loss": history["loss"], "initial_distance": history["initial_distance"],
               "final_distance": history["final_distance"], "train_seconds": history["seconds"],
               **quality(samples, target, nside), "ms_per_sample": ms_per_sample(gen)}
    print(f"trained {iters} steps of {batch} maps in {history['seconds']:.1f} s: statistics distance "
          f"{numbers['initial_distance']:.3g} -> {numbers['final_distance']:.3g}")
    print_quality(f"generator, 16 samples", numbers)
    print(f"{numbers['ms_per_sample']:.2f} ms per sample (batch of 16, {args.backend}, CPU threads as set)")
    if args.out:
        numbers["figures"] = figures(args.out, target, samples, nside)
        print("wrote " + ", ".join(numbers["figures"]))
    return numbers


if __name__ == "__main__":
    main()
