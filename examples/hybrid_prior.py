"""Synthesis with a hybrid loss: scattering statistics plus a trained denoising U-Net as a prior.

Run:  python examples/hybrid_prior.py [--backend torch|tensorflow] [--nside 32] [--epochs 30]
                                      [--iterations 60] [--prior-weight 1.0] [--quick] [--out DIR]

Step 1 trains a small HealpixUNet to denoise a regional field (a 30 degree disc): input a smooth
Gaussian random field plus white noise, target the clean field. Step 2 synthesises a field on the
same disc from white noise by minimising the sum of two terms:

- ``statistics``: the squared distance between the scattering statistics of ``x``
  (``op.eval(x, cell_ids=, nside=, norm="self")``) and the mean statistics of the clean training
  fields;
- ``U-Net prior``: ``weight * mean((net(x) - x)**2)``. A clean field is (nearly) a fixed point of
  the denoiser, a noisy one is not, so this term measures how "noisy" ``x`` still looks to the
  network.

The prior calls the network **directly on the backend tensor x** (reshaped to (1, 1, N) with
backend ops). The graph then runs from ``x`` through every convolution of the U-Net to the loss,
and L-BFGS-B receives the gradient of the prior as well as that of the statistics.

The reference library's documentation page for this kind of hybrid loss converts ``x`` to NumPy
inside the loss (``x.numpy()`` / ``.cpu().detach()``) and feeds that array to the network's
``predict``. That breaks the autograd graph: the prior's value is still computed, but its
gradient with respect to ``x`` is zero (or missing), so the optimiser only follows the statistics
term and the network never shapes the result. Here the same cut version is built for comparison:
its gradient norm at the starting map is printed next to the natural one (it is 0), and a
synthesis with the cut prior alone is refused by :class:`Synthesis` because it has no gradient.
Added to the statistics term, the cut prior changes nothing in the optimisation: it is the same
as a statistics-only synthesis, which is also run and whose final prior value is printed.

Printed: the U-Net's denoising skill, each term and the total at the start and the end of the
synthesis, their values along the way, the gradient norms, and the prior term reached by a
statistics-only synthesis (what the cut version amounts to). ``--quick`` is a CI-sized run
(nside 16); ``--out DIR`` writes ``hybrid_prior.png`` (start / synthesis / one clean training
field) and ``hybrid_prior_history.png``. At the default size on a 2-core CPU: about 10 s with
torch, 40 s with TensorFlow.
"""

import argparse
import time
from pathlib import Path

import healpy as hp
import numpy as np

from foscat_core.backends import NoGradientError, TracedHostCopyError
from foscat_core.nn import HealpixUNet
from foscat_core.scattering import funct
from foscat_core.synthesis import Loss, Synthesis


def make_fields(n, nside, cell_ids, noise, seed):
    """(noisy, clean): (n, 1, N_cells) float32 each; clean fields have unit variance."""
    rng = np.random.default_rng(seed)
    ell = np.arange(3 * nside)
    cl = 1.0 / (1.0 + (ell / 6.0) ** 3)
    clean = np.empty((n, len(cell_ids)))
    for i in range(n):
        np.random.seed(int(rng.integers(2**31)))  # healpy draws from NumPy's global generator
        clean[i] = hp.reorder(hp.synfast(cl, nside), r2n=True)[cell_ids]
    clean /= clean.std()
    noisy = clean + noise * rng.normal(size=clean.shape)
    return noisy[:, None].astype(np.float32), clean[:, None].astype(np.float32)


def statistics_term(x, scat_op, args):
    target, cell_ids, nside = args
    stats = scat_op.eval(x, cell_ids=cell_ids, nside=nside, norm="self")
    return stats.reduce_mean_batch((stats - target) ** 2)


def unet_prior(x, scat_op, args):
    """The natural prior: the network runs on the backend tensor x, the gradient flows through it."""
    net, weight = args
    xp = scat_op.backend.xp
    field = xp.reshape(x, (1, 1, -1))
    return weight * xp.mean((net(field) - field) ** 2)


def cut_unet_prior(x, scat_op, args):
    """What the reference page does: x goes to NumPy before the network, so no gradient reaches x."""
    net, weight = args
    bk = scat_op.backend
    field = bk.to_numpy(x).reshape(1, 1, -1)
    value = weight * np.mean((net.predict(field) - field) ** 2)
    return bk.asarray(np.float32(value))  # a backend scalar, but a constant as far as x is concerned


def gradient_norm(loss, x):
    """|d loss / dx| at the host map x (0 when the loss does not depend on x through the backend)."""
    bk = loss.backend
    try:
        _, grad = bk.value_and_grad(lambda t: loss.eval(t), bk.asarray(x, dtype=loss.dtype))
    except (NoGradientError, TracedHostCopyError):  # JAX refuses the NumPy copy of a traced x outright
        return 0.0
    return float(np.linalg.norm(bk.to_numpy(grad)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow", "jax"])
    parser.add_argument("--nside", type=int, default=None, help="default 32 (16 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="U-Net epochs; default 30 (6 with --quick)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="L-BFGS-B iterations; default 60 (10 with --quick)")
    parser.add_argument("--prior-weight", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="CI-sized run (a few seconds)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--out", default=None, help="folder for the PNGs (skipped when not given)")
    args = parser.parse_args(argv)

    nside = args.nside or (16 if args.quick else 32)
    epochs = args.epochs or (6 if args.quick else 30)
    iterations = args.iterations or (10 if args.quick else 60)
    n_train, chanlist = (16, [8, 16]) if args.quick else (48, [16, 32])
    cell_ids = hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(40.0 if args.quick else 30.0), nest=True)

    # --- step 1: a denoiser --------------------------------------------------------------------
    x_train, y_train = make_fields(n_train, nside, cell_ids, noise=0.7, seed=0)
    x_val, y_val = make_fields(8, nside, cell_ids, noise=0.7, seed=1)
    net = HealpixUNet(in_nside=nside, n_chan_in=1, chanlist=chanlist, cell_ids=cell_ids, backend=args.backend)
    t0 = time.perf_counter()
    net.fit(x_train, y_train, n_epoch=epochs, batch_size=8, lr=3e-3, verbose=False)
    mse_net = float(np.mean((net.predict(x_val) - y_val) ** 2))
    mse_noisy = float(np.mean((x_val - y_val) ** 2))
    print(f"{len(cell_ids)} cells at nside {nside}; U-Net ({net.n_parameters()} weights, {args.backend}) trained in "
          f"{time.perf_counter() - t0:.1f} s: validation MSE {mse_net:.3f} vs {mse_noisy:.3f} for the noisy input")
    net.eval()  # batch norm uses its running statistics inside the loss

    # --- step 2: the hybrid synthesis ----------------------------------------------------------
    op = funct(KERNELSZ=3, NORIENT=4, all_type="float32", backend=args.backend)
    target = op.eval(y_train[:, 0], cell_ids=cell_ids, nside=nside, norm="self").mean_batch()
    terms = [Loss(statistics_term, op, target, cell_ids, nside, name="statistics"),
             Loss(unet_prior, op, net, args.prior_weight, name="U-Net prior")]
    cut = Loss(cut_unet_prior, op, net, args.prior_weight, name="cut prior")
    start = np.random.default_rng(3).normal(size=len(cell_ids)).astype(np.float32)

    def term_values(m):
        return [float(op.backend.to_numpy(t.eval(m))) for t in terms]

    grads = {"statistics": gradient_norm(terms[0], start), "U-Net prior": gradient_norm(terms[1], start),
             "cut prior": gradient_norm(cut, start)}
    try:
        Synthesis([cut], verbose=False).run(start, NUM_EPOCHS=1)
        refused = "not refused"
    except (ValueError, TracedHostCopyError) as err:  # no gradient (torch, TF) or no NumPy copy of a traced x (JAX)
        refused = str(err).split(";")[0]

    every = max(1, iterations // 4)
    solver = Synthesis(terms, verbose=not args.quiet)
    t0 = time.perf_counter()
    result = solver.run(start, NUM_EPOCHS=iterations, EVAL_FREQUENCY=every, KEEP_TRACK=term_values,
                        MESSAGE=f"[{args.backend}] ")
    seconds = time.perf_counter() - t0
    history = solver.get_history()
    first, last = term_values(start), term_values(result)
    track = solver.get_track()
    print(f"synthesis: {len(history) - 1} L-BFGS-B iterations in {seconds:.1f} s; total loss {history[0]:.4e} -> "
          f"{history[-1]:.4e} (x{history[0] / max(history[-1], 1e-300):.1f} lower)")
    print(f"{'iteration':>10} {'statistics':>12} {'U-Net prior':>12} {'total':>12}")
    for k, (s, p) in enumerate(track):
        print(f"{k * every:>10} {s:12.4e} {p:12.4e} {s + p:12.4e}")
    print(f"{'final':>10} {last[0]:12.4e} {last[1]:12.4e} {sum(last):12.4e}")
    print(f"gradient norms at the start: statistics {grads['statistics']:.3e}, U-Net prior (network on x) "
          f"{grads['U-Net prior']:.3e}, cut prior (x -> NumPy -> network) {grads['cut prior']:.3e}")
    print(f"synthesis with the cut prior alone: {refused}")
    stats_only = Synthesis([terms[0]], verbose=False).run(start, NUM_EPOCHS=iterations)
    only = term_values(stats_only)
    print(f"statistics-only synthesis (= with the cut prior): statistics {only[0]:.4e}, U-Net prior {only[1]:.4e} "
          f"(hybrid: {last[0]:.4e}, {last[1]:.4e})")
    clean_prior = float(np.mean([args.prior_weight * np.mean((net.predict(y[None]) - y[None]) ** 2) for y in y_val]))
    print(f"for scale: the prior of clean validation fields is {clean_prior:.4e}")

    numbers = {"val_mse_network": mse_net, "val_mse_noisy": mse_noisy, "loss_start": float(history[0]),
               "loss_final": float(history[-1]), "statistics_start": first[0], "statistics_final": last[0],
               "prior_start": first[1], "prior_final": last[1], "prior_clean_fields": clean_prior,
               "stats_only_statistics": only[0], "stats_only_prior": only[1],
               "track": [list(t) for t in track], "gradient_norms": grads, "cut_prior_refused": refused,
               "seconds": seconds}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        from foscat_core import plot

        fig = plot.show_maps([start, result, y_train[0, 0]], nside, cell_ids, ncols=3,
                             titles=["start (white noise)", "hybrid synthesis", "a clean training field"])
        numbers["figure"] = plot.save(fig, Path(args.out) / "hybrid_prior.png", close=True)
        numbers["history_figure"] = plot.save(plot.show_history(history, title="hybrid loss"),
                                              Path(args.out) / "hybrid_prior_history.png", close=True)
        print(f"wrote {numbers['figure']} and {numbers['history_figure']}")
    return numbers


if __name__ == "__main__":
    main()
