"""Generator vs L-BFGS synthesis on a lognormal target: training time, sampling speed, quality.

    python benchmarks/bench_generator.py                      # nside 64, torch
    python benchmarks/bench_generator.py --quick              # nside 16, a minute
    python benchmarks/bench_generator.py --iters 400 --lbfgs-iters 300 --backend tensorflow

One run, one target (``examples/generator.py``'s lognormal field from healpy's CMB spectrum),
one scattering operator (KERNELSZ 3, NORIENT 4, float32, ``norm="self"``):

* the generator is trained for ``--iters`` Adam steps of ``--batch`` maps; reported: training
  time, milliseconds per sample (one batch of 16, best of 5), and over 16 samples the band power
  ratios (octaves of ell from 4 to 2 nside, anafast), mean skewness and excess kurtosis against
  the target's, mean |corr| between samples, max |corr| with the target;
* an L-BFGS synthesis (:class:`~foscat_core.synthesis.Synthesis`) of ``--lbfgs-maps`` maps
  from white noise with the same operator and the same per-map distance, ``--lbfgs-iters``
  iterations; the same figures, and its time per map.

Issue 12's targets: bands within 15%, skewness and kurtosis within 20%, mean |corr| < 0.1,
< 10 ms per map. Timings depend on the machine and its load: compare within one run.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from generator import lognormal_target, ms_per_sample, print_quality, quality  # noqa: E402

from foscat_core.scattering import funct  # noqa: E402
from foscat_core.synthesis import Generator, Loss, Synthesis  # noqa: E402
from foscat_core.synthesis.generator_training import distance_terms, scales  # noqa: E402


def filaments_target(nside, seed=0):
    """``g**2`` of a Gaussian field with ``C_l = 1/l`` smoothed by a 2-pixel Gaussian beam
    (``benchmarks/synthesis_quality.py``'s filaments), standardised, NESTED."""
    import healpy as hp

    lmax = 3 * nside - 1
    ell = np.arange(lmax + 1)
    np.random.seed(seed)  # synfast draws from NumPy's global generator
    g = hp.synfast(np.where(ell >= 2, 1.0 / np.maximum(ell, 1), 0.0), nside,
                   fwhm=np.radians(2 * hp.nside2resol(nside, arcmin=True) / 60))
    x = hp.reorder(g**2, r2n=True)
    return (x - x.mean()) / x.std()


def verdict(q):
    bands = max(abs(r - 1.0) for _, _, r in q["bands"])
    skew = abs(q["skewness"] / q["target_skewness"] - 1.0)
    kurt = abs(q["kurtosis"] / q["target_kurtosis"] - 1.0)
    return (f"worst band {100 * bands:.0f}% (target 15%), skewness {100 * skew:.0f}% and kurtosis "
            f"{100 * kurt:.0f}% off (target 20%), mean |corr| {q['mean_abs_corr']:.3f} (target 0.1)")


def lbfgs(op, target, nside, n_maps, iters, verbose):
    """L-BFGS-B synthesis of ``n_maps`` maps (one run, each map matched on its own)."""
    ref = op.eval(target, norm="self")
    weights = {name: op.backend.raw.asarray(w, dtype=op.all_type) for name, w in scales(ref).items()}

    def per_map_distance(x, scat_op, args):
        stats = scat_op.eval(x, norm="self")
        return scat_op.backend.xp.sum(distance_terms(scat_op.backend.xp, stats, ref, weights))

    start = np.random.default_rng(1).normal(size=(n_maps, 12 * nside**2))
    synth = Synthesis([Loss(per_map_distance, op)], verbose=verbose)
    t0 = time.perf_counter()
    maps = synth.run(start, NUM_EPOCHS=iters, EVAL_FREQUENCY=max(1, iters // 5))
    seconds = time.perf_counter() - t0
    history = synth.get_history()
    return maps, seconds, float(history[0]) / n_maps, float(history[-1]) / n_maps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow"])
    parser.add_argument("--nside", type=int, default=None, help="default 64 (16 with --quick)")
    parser.add_argument("--iters", type=int, default=None, help="generator steps; default 400 (150 with --quick)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--chanlist", default=None, help="comma-separated, finest first; default 4,8,16,32,64")
    parser.add_argument("--diversity", type=float, default=1.0)
    parser.add_argument("--one-point", type=float, default=None, help="weight of the one-point (sorted values) term "
                        "(default: fit's)")
    parser.add_argument("--fine-level", default=None, choices=["conv", "subpixel", "hybrid"],
                        help="default: the Generator's")
    parser.add_argument("--output", default=None, choices=["linear", "sinh-arcsinh", "quantile"], help="default: the Generator's")
    parser.add_argument("--spectrum", type=float, default=None, help="weight of the band-power term (default: fit's)")
    parser.add_argument("--moments", type=float, default=None, help="weight of the moments term (default: fit's)")
    parser.add_argument("--match", default=None, choices=["sample", "batch", "both"], help="default: fit's")
    parser.add_argument("--target", default="lognormal", choices=["lognormal", "filaments"])
    parser.add_argument("--save", default=None, help="write the trained generator to this .npz file")
    parser.add_argument("--norm", default="self", choices=["self", "none"], help="norm of the scattering statistics")
    parser.add_argument("--lbfgs-maps", type=int, default=4)
    parser.add_argument("--lbfgs-iters", type=int, default=None, help="default 200 (100 with --quick)")
    parser.add_argument("--no-lbfgs", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    nside = args.nside or (16 if args.quick else 64)
    iters = args.iters or (150 if args.quick else 400)
    lbfgs_iters = args.lbfgs_iters or (100 if args.quick else 200)
    chanlist = [int(c) for c in args.chanlist.split(",")] if args.chanlist else [4, 8, 16, 32, 64][: max(2, nside.bit_length() - 2)]
    target = lognormal_target(nside) if args.target == "lognormal" else filaments_target(nside)
    op = funct(KERNELSZ=3, NORIENT=4, all_type="float32", backend=args.backend)
    given = lambda **kw: {k: v for k, v in kw.items() if v is not None}  # noqa: E731
    gen = Generator(nside, chanlist=chanlist, backend=args.backend, seed=0,
                    **given(fine_level=args.fine_level, output=args.output))
    fit_kw = given(one_point=args.one_point, spectrum=args.spectrum, moments=args.moments, match=args.match)
    print(f"{gen}; fine_level {gen.config['fine_level']!r}, output {gen.config['output']!r}; target {args.target}, "
          f"nside {nside}, {iters} steps of {args.batch} maps, lr {args.lr}, fit options {fit_kw or 'default'}, "
          f"norm {args.norm}, threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    history = gen.fit(target, op, n_iter=iters, batch_size=args.batch, lr=args.lr, verbose=args.verbose, seed=0,
                      diversity=args.diversity, norm=None if args.norm == "none" else args.norm, **fit_kw)
    if args.save:
        gen.save(args.save)
    q = quality(gen.sample(16, seed=123), target, nside)
    ms = ms_per_sample(gen)
    terms = ", ".join(f"{k} {history['initial_' + k]:.3g} -> {history['final_' + k]:.3g}"
                      for k in ("distance", "one_point", "spectrum", "moments") if np.isfinite(history["final_" + k]))
    print(f"[generator] training {history['seconds']:.0f} s ({history['seconds'] / iters:.2f} s/step); {terms}; "
          f"{ms:.2f} ms per sample (batch 16)")
    print_quality("generator", q)
    print(f"[generator] {verdict(q)}")
    out = {"generator": dict(q, train_seconds=history["seconds"], ms_per_sample=ms,
                             final_distance=history["final_distance"])}
    if not args.no_lbfgs:
        maps, seconds, d0, d1 = lbfgs(op, target, nside, args.lbfgs_maps, lbfgs_iters, args.verbose)
        q2 = quality(maps, target, nside)
        print(f"[L-BFGS] {args.lbfgs_maps} maps, {lbfgs_iters} iterations: {seconds:.0f} s "
              f"({seconds / args.lbfgs_maps:.1f} s per map); per-map distance {d0:.3g} -> {d1:.3g}")
        print_quality("L-BFGS", q2)
        print(f"[L-BFGS] {verdict(q2)}")
        out["lbfgs"] = dict(q2, seconds=seconds, final_distance=d1)
    return out


if __name__ == "__main__":
    main()
