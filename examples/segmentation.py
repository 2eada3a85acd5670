"""Segment cold / neutral / hot "eddies" on a regional disc with a HealpixUNet (task="segmentation").

Run:  python examples/segmentation.py [--backend torch|tensorflow] [--nside 32] [--epochs 30]
                                      [--quick] [--out DIR]

A smooth Gaussian random field (red spectrum, unit variance) is drawn with healpy on a 30 degree
disc around (theta=pi/2, phi=0). Its three classes are set by thresholds at -0.6 and +0.6:
0 = cold eddy, 1 = neutral water, 2 = hot eddy. The network only sees the field through white
noise and learns, from integer labels (N, N_cells), to give each cell its class (a 3-channel
softmax head, categorical cross-entropy). On held-out maps it reports the pixel accuracy and the
per-class intersection-over-union (IoU), against two baselines: the majority class everywhere and
thresholding the noisy input itself (what one would do without a network). ``--quick`` is a
CI-sized run (nside 16, a few epochs, a few seconds); ``--out DIR`` writes ``segmentation.png``
(noisy input / true classes / predicted classes of one validation map). At the default size on a
2-core CPU: about 15 s with torch, 20 s with TensorFlow.
"""

import argparse
import time
from pathlib import Path

import healpy as hp
import numpy as np

from foscat_core.nn import HealpixUNet

CLASSES = ("cold", "neutral", "hot")
THRESHOLD = 0.6


def make_data(n, nside, cell_ids, noise, seed):
    """(noisy, labels, clean): inputs (n, 1, N) float32, integer classes (n, N), clean fields (n, N)."""
    rng = np.random.default_rng(seed)
    ell = np.arange(3 * nside)
    cl = 1.0 / (1.0 + (ell / 5.0) ** 3)  # red spectrum: eddies a few degrees across
    clean = np.empty((n, len(cell_ids)))
    for i in range(n):
        np.random.seed(int(rng.integers(2**31)))  # healpy draws from NumPy's global generator
        clean[i] = hp.reorder(hp.synfast(cl, nside), r2n=True)[cell_ids]
    clean = (clean - clean.mean()) / clean.std()
    labels = classify(clean)
    noisy = clean + noise * rng.normal(size=clean.shape)
    return noisy[:, None].astype(np.float32), labels, clean


def classify(field):
    """0 below -THRESHOLD, 2 above +THRESHOLD, 1 in between."""
    return np.digitize(field, [-THRESHOLD, THRESHOLD]).astype(np.int64)


def scores(pred, truth, n_classes=3):
    """(pixel accuracy, [IoU per class]); a class absent from both gives IoU nan."""
    accuracy = float(np.mean(pred == truth))
    iou = []
    for c in range(n_classes):
        inter = np.sum((pred == c) & (truth == c))
        union = np.sum((pred == c) | (truth == c))
        iou.append(float(inter / union) if union else float("nan"))
    return accuracy, iou


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow", "jax"])
    parser.add_argument("--nside", type=int, default=None, help="default 32 (16 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (6 with --quick)")
    parser.add_argument("--noise", type=float, default=0.5, help="noise rms in units of the field's rms")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (a few seconds)")
    parser.add_argument("--out", default=None, help="folder for segmentation.png (skipped when not given)")
    args = parser.parse_args(argv)

    nside = args.nside or (16 if args.quick else 32)
    epochs = args.epochs or (6 if args.quick else 30)
    n_train, n_val = (24, 8) if args.quick else (48, 12)
    chanlist = [8, 16] if args.quick else [16, 32]
    radius = 40.0 if args.quick else 30.0
    cell_ids = hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(radius), nest=True)
    x_train, y_train, _ = make_data(n_train, nside, cell_ids, args.noise, seed=0)
    x_val, y_val, _ = make_data(n_val, nside, cell_ids, args.noise, seed=1)
    fractions = np.bincount(y_train.ravel(), minlength=3) / y_train.size
    print(f"{len(cell_ids)} cells at nside {nside}; {n_train} training and {n_val} validation maps; class "
          "fractions " + ", ".join(f"{name} {f:.2f}" for name, f in zip(CLASSES, fractions)))

    t0 = time.perf_counter()
    net = HealpixUNet(in_nside=nside, n_chan_in=1, chanlist=chanlist, cell_ids=cell_ids, KERNELSZ=3,
                      task="segmentation", out_channels=3, backend=args.backend)
    history = net.fit(x_train, y_train, x_val=x_val, y_val=y_val, n_epoch=epochs, batch_size=8, lr=5e-3,
                      view_epoch=0, verbose=False)
    seconds = time.perf_counter() - t0
    print(f"HealpixUNet ({net.n_parameters()} weights, {args.backend}) trained {epochs} epochs in {seconds:.1f} s; "
          f"validation cross-entropy {history['val_loss'][0]:.3f} -> {history['val_loss'][-1]:.3f}")

    predicted = np.argmax(net.predict(x_val), axis=1)
    majority = int(np.argmax(fractions))
    rows = {"U-Net": scores(predicted, y_val),
            f"majority ({CLASSES[majority]})": scores(np.full_like(y_val, majority), y_val),
            "threshold noisy input": scores(classify(x_val[:, 0]), y_val)}
    print(f"{'validation':>22} {'accuracy':>9} " + " ".join(f"{'IoU ' + c:>11}" for c in CLASSES) + f" {'mean IoU':>9}")
    for name, (acc, iou) in rows.items():
        cells = " ".join(f"{v:11.3f}" for v in iou)
        print(f"{name:>22} {acc:9.3f} {cells} {np.nanmean(iou):9.3f}")

    (acc, iou), (base_acc, base_iou), (thr_acc, thr_iou) = rows.values()
    result = {"accuracy": acc, "iou": iou, "mean_iou": float(np.nanmean(iou)), "baseline_accuracy": base_acc,
              "baseline_mean_iou": float(np.nanmean(base_iou)), "threshold_accuracy": thr_acc,
              "threshold_mean_iou": float(np.nanmean(thr_iou)), "class_fractions": fractions.tolist(),
              "val_loss": history["val_loss"], "train_seconds": seconds}

    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        from foscat_core import plot

        fig = plot.show_maps([x_val[0, 0], y_val[0], predicted[0]], nside, cell_ids, shared_scale=False,
                             titles=["noisy input", "true classes (0 cold, 2 hot)", "U-Net classes"], ncols=3,
                             cmap="coolwarm")
        result["figure"] = plot.save(fig, Path(args.out) / "segmentation.png", close=True)
        print(f"wrote {result['figure']}")
    return result


if __name__ == "__main__":
    main()
