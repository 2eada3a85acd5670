"""How well does a scattering synthesis reproduce its target? Band powers, moments, Minkowski
functionals against the number of L-BFGS iterations, for three losses.

    OMP_NUM_THREADS=1 python benchmarks/synthesis_quality.py                  # nside 32 and 64, 50/100/200 iterations
    OMP_NUM_THREADS=1 python benchmarks/synthesis_quality.py --nsides 32 --backend tensorflow
    python benchmarks/synthesis_quality.py --quick                             # nside 16, 10/20 iterations

Targets (full sky, NESTED, standardised, built from package data only; the realisations of the
process are scaled like the target, not each standardised: an exactly standardised batch has a
zero spread of S0 and sigma would be 0 there):

* ``lognormal``: ``exp(0.4 g)`` of a unit-variance Gaussian field ``g`` drawn from healpy's bundled CMB
  spectrum (``foscat_core.demo.data.cmb_spectrum``), i.e. a skewed, CMB-like field;
* ``filaments``: ``g**2`` of a Gaussian field with ``C_l = l**-1`` smoothed by a 2-pixel Gaussian
  beam: thin bright ridges on a floor.

Losses (operator ``funct(KERNELSZ=5, NORIENT=4)``, no norm, as in the README):

* ``readme``: ``stats.reduce_mean_batch((stats - ref) ** 2)``;
* ``distance``: ``op.reduce_distance(stats, ref)``: the same terms, averaged instead of summed;
* ``dist+sigma``: ``op.reduce_distance(stats, ref, sigma)`` with ``sigma = std_batch()`` of
  ``--realisations`` other draws of the target's process;
* ``readme+hist`` (the README's recommendation): ``readme`` plus ``--hist-weight`` times
  ``histogram_distance(x, target)`` (the one-point term, ``foscat_core.synthesis.histogram_distance``);
* ``self+hist``: the same with statistics normalised by ``norm="self"``;
* ``hist+morph`` (the README's recommendation since the filaments' V1/V2 were fixed): ``readme+hist``
  plus ``--s2-weight`` (1) times ``mean((log S2 - log S2_ref)**2)`` (every scale's power, relatively:
  pins the largest scales, whose S2 weigh little in the plain squared difference) plus
  ``--morph-weight`` (0.5) times ``morphology_distance(x, target)`` (the level lines' length and
  curvature conditioned on the value, ``foscat_core.synthesis.morphology_distance``;
  ``--morph-bins`` value windows, ``--morph-features`` among gradient, curvature, laplacian).

Every synthesis starts from the same white noise. At each checkpoint it reports the band power
ratio synthesis / target per octave (``l = 4-8, 8-16, ..., nside-2 nside``), skewness and excess
kurtosis as ratios to the target's, and for each Minkowski functional (area fraction V0,
boundary length V1, Euler characteristic V2, at 10 thresholds: the target's 5%-95% quantiles)
the largest difference over the thresholds divided by the target's range over them. The row
``realisation`` gives the same figures for another draw of the target's process: the scatter a
perfect synthesis would show. Done-when targets (issue 13): octaves within 10%, skewness and
kurtosis within 20%, Minkowski functionals within 0.10.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import healpy as hp  # noqa: E402
import numpy as np  # noqa: E402

from foscat_core.demo.data import cmb_spectrum  # noqa: E402
from foscat_core.diagnostics import band_power_ratios, minkowski_functionals, moments  # noqa: E402
from foscat_core.scattering import funct  # noqa: E402
from foscat_core.synthesis import Loss, Synthesis, histogram_distance, morphology_distance  # noqa: E402


def gaussian(cl, nside, seed, fwhm=0.0):
    np.random.seed(seed)  # healpy draws from NumPy's global generator
    return hp.reorder(hp.synfast(cl, nside, fwhm=fwhm), r2n=True)


def draw(kind, nside, seed):
    """One NESTED map of the target process ``kind`` (not standardised map by map: realisations
    keep their scatter of mean and variance, so ``sigma`` has no zero entry)."""
    lmax = 3 * nside - 1
    if kind == "lognormal":
        cl = cmb_spectrum(lmax)
        return np.exp(0.4 * gaussian(cl, nside, seed) / np.sqrt(np.sum((2 * np.arange(lmax + 1) + 1) * cl) / (4 * np.pi)))
    ell = np.arange(lmax + 1)
    cl = np.where(ell >= 2, 1.0 / np.maximum(ell, 1), 0.0)
    fwhm = np.radians(2 * hp.nside2resol(nside, arcmin=True) / 60)
    return gaussian(cl, nside, seed, fwhm) ** 2


def readme_loss(x, op, args):
    stats = op.eval(x)
    return stats.reduce_mean_batch((stats - args[0]) ** 2)


def distance_loss(x, op, args):
    return op.reduce_distance(op.eval(x), args[0])


def sigma_loss(x, op, args):
    return op.reduce_distance(op.eval(x), args[0], args[1])


def hist_loss(x, op, args):
    ref, target, weight, norm = args
    stats = op.eval(x, norm=norm)
    return stats.reduce_mean_batch((stats - ref) ** 2) + weight * histogram_distance(x, target)


def morph_loss(x, op, args):
    """readme + hist + s2_weight * log-S2 term + morph_weight * morphology_distance."""
    ref, target, weight, morph_weight, morph_kw, s2_weight = args
    stats = op.eval(x)
    out = (stats.reduce_mean_batch((stats - ref) ** 2) + weight * histogram_distance(x, target)
           + morph_weight * morphology_distance(x, target, **morph_kw))
    if s2_weight:
        xp = op.backend.xp
        out = out + s2_weight * xp.mean((xp.log(stats.S2) - xp.log(ref.S2)) ** 2)
    return out


def quality(m, target, thresholds):
    """(band ratios, skewness ratio, kurtosis ratio, [V0, V1, V2] errors relative to range)."""
    _, ratios = band_power_ratios(m, target)
    mm, mt = moments(m), moments(target)
    errors = []
    for v, w in zip(minkowski_functionals(m, thresholds), minkowski_functionals(target, thresholds)):
        errors.append(np.max(np.abs(v - w)) / (np.max(w) - np.min(w)))
    return ratios[0], mm["skewness"][0] / mt["skewness"][0], mm["kurtosis"][0] / mt["kurtosis"][0], errors


def row(label, iters, q, seconds):
    ratios, skew, kurt, mf = q
    bands = " ".join(f"{r:5.2f}" for r in ratios)
    return (f"| {label:<11} | {iters:>5} | {bands} | {skew:5.2f} | {kurt:5.2f} | {mf[0]:5.3f} | {mf[1]:5.3f} | "
            f"{mf[2]:5.3f} | {seconds:6.1f} |")


LOSSES = ("readme", "distance", "dist+sigma", "readme+hist", "self+hist", "hist+morph")


def run_target(kind, nside, iters, backend, n_real, xi=None, losses=LOSSES, hist_weight=10.0, morph_weight=0.5,
               morph_kw=None, s2_weight=1.0):
    raw = draw(kind, nside, 0)
    mean, std = raw.mean(), raw.std()
    target = (raw - mean) / std  # the target standardised; its realisations in the same units
    realisations = np.stack([(draw(kind, nside, 100 + k) - mean) / std for k in range(n_real)])
    thresholds = np.quantile(target, np.linspace(0.05, 0.95, 10))
    op = funct(KERNELSZ=5, NORIENT=4, backend=backend, XI=xi)
    ref = op.eval(target)
    sigma = op.eval(realisations).std_batch()
    m = moments(target)
    n_bands = int(np.log2(nside)) - 1
    print(f"\n### {kind}, nside {nside}, {backend}, XI = {op.XI / np.pi:.2f} pi (target skewness {m['skewness'][0]:.3f}, excess kurtosis "
          f"{m['kurtosis'][0]:.3f}; sigma from {n_real} realisations)\n")
    bands = " ".join(f"{2**k}-{2**(k + 1)}".rjust(5) for k in range(2, 2 + n_bands))
    print(f"| loss        | iters | band power ratio, l = {bands} | skew  | kurt  | ΔV0   | ΔV1   | ΔV2   | time s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("realisation", 0, quality(realisations[0], target, thresholds), 0.0))
    x0 = np.random.default_rng(1).normal(size=target.size)
    step = int(np.gcd.reduce(iters))
    for label, fn, args in (("readme", readme_loss, (ref,)), ("distance", distance_loss, (ref,)),
                            ("dist+sigma", sigma_loss, (ref, sigma)),
                            ("readme+hist", hist_loss, (ref, target, hist_weight, None)),
                            ("self+hist", hist_loss, (op.eval(target, norm="self"), target, hist_weight, "self")),
                            ("hist+morph", morph_loss,
                             (ref, target, hist_weight, morph_weight, morph_kw or {}, s2_weight))):
        if label not in losses:
            continue
        synth = Synthesis([Loss(fn, op, *args)], verbose=False)
        t0 = time.perf_counter()
        final = synth.run(x0, NUM_EPOCHS=max(iters), EVAL_FREQUENCY=step, KEEP_TRACK=True, factr=1.0)
        seconds = time.perf_counter() - t0
        track = synth.get_track()  # maps at iterations 0, step, 2 step, ... (fewer if it stopped early)
        for it in iters:
            k = it // step
            print(row(label, it, quality(track[k] if k < len(track) else final, target, thresholds),
                      seconds * it / max(iters)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsides", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--iters", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow"])
    parser.add_argument("--targets", nargs="+", default=["lognormal", "filaments"],
                        choices=["lognormal", "filaments"])
    parser.add_argument("--realisations", type=int, default=8, help="maps sigma is estimated from")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--hist-weight", type=float, default=10.0, help="weight of the histogram term of readme+hist, self+hist and hist+morph")
    parser.add_argument("--s2-weight", type=float, default=1.0,
                        help="weight of the log-S2 term of hist+morph (relative power per scale)")
    parser.add_argument("--morph-weight", type=float, default=0.5, help="weight of the morphology term of hist+morph")
    parser.add_argument("--morph-bins", type=int, default=16, help="value bins of the morphology term")
    parser.add_argument("--morph-features", nargs="+", default=["gradient", "curvature"],
                        choices=["gradient", "curvature", "laplacian"], help="local features of the morphology term")
    parser.add_argument("--xi", type=float, default=None,
                        help="wavelet carrier in units of pi radians per pixel (default: the operator's, 0.6; "
                             "0.75 for the statistics of earlier versions)")
    parser.add_argument("--quick", action="store_true", help="nside 16, 10 and 20 iterations, 4 realisations")
    args = parser.parse_args()
    if args.quick:
        args.nsides, args.iters, args.realisations = [16], [10, 20], 4
    if args.backend == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    for nside in args.nsides:
        for kind in args.targets:
            run_target(kind, nside, sorted(args.iters), args.backend, args.realisations,
                       None if args.xi is None else args.xi * np.pi, args.losses, args.hist_weight, args.morph_weight,
                       {"n_bins": args.morph_bins, "features": tuple(args.morph_features)}, args.s2_weight)


if __name__ == "__main__":
    main()
