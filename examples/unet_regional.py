"""Denoise a regional field with a HealpixUNet, then move the trained network to another framework.

Run:  python examples/unet_regional.py [--backend torch|tensorflow] [--nside 32] [--epochs 20]

Fields are Gaussian random fields drawn with healpy from a red power spectrum, observed with white
noise on a 30 degree disc around (theta=pi/2, phi=0). The network sees the noisy field and learns
the clean one; its validation error is compared with the trivial answer "the noisy field itself"
and with a 1x1 (no neighbours) baseline. Takes about a minute on a 2-core CPU.
"""

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import healpy as hp
import numpy as np

from foscat_core.nn import CNN, HealpixUNet


def make_fields(n, nside, cell_ids, noise, seed):
    """(x, y): noisy and clean fields on ``cell_ids``, each (n, 1, N_cells), float32."""
    rng = np.random.default_rng(seed)
    ell = np.arange(3 * nside)
    cl = 1.0 / (1.0 + (ell / 6.0) ** 3)  # red spectrum: large scales dominate
    clean = np.empty((n, len(cell_ids)))
    for i in range(n):
        np.random.seed(int(rng.integers(2**31)))  # healpy draws from NumPy's global generator
        ring = hp.synfast(cl, nside)
        clean[i] = hp.reorder(ring, r2n=True)[cell_ids]
    clean /= clean.std()
    noisy = clean + noise * rng.normal(size=clean.shape)
    return noisy[:, None].astype(np.float32), clean[:, None].astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow", "jax"])
    parser.add_argument("--nside", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    nside = args.nside
    cell_ids = hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(30), nest=True)
    x_train, y_train = make_fields(48, nside, cell_ids, noise=0.7, seed=0)
    x_val, y_val = make_fields(12, nside, cell_ids, noise=0.7, seed=1)
    print(f"{len(cell_ids)} cells at nside {nside}; {len(x_train)} training and {len(x_val)} validation maps")

    t0 = time.perf_counter()
    net = HealpixUNet(in_nside=nside, n_chan_in=1, chanlist=[16, 32], cell_ids=cell_ids, KERNELSZ=3,
                      out_channels=1, backend=args.backend)
    history = net.fit(x_train, y_train, x_val=x_val, y_val=y_val, n_epoch=args.epochs, batch_size=8,
                      lr=3e-3, view_epoch=5, verbose=not args.quiet)
    print(f"HealpixUNet ({net.n_parameters()} weights) trained in {time.perf_counter() - t0:.1f} s")

    baseline = CNN(nside, 1, [16, 16], KERNELSZ=1, cell_ids=cell_ids, backend=args.backend)
    base_history = baseline.fit(x_train, y_train, x_val=x_val, y_val=y_val, n_epoch=args.epochs, batch_size=8,
                                lr=3e-3, verbose=False)
    identity = float(np.mean((x_val - y_val) ** 2))
    print(f"validation MSE: U-Net {history['val_loss'][-1]:.4f} | 1x1 baseline {base_history['val_loss'][-1]:.4f}"
          f" | noisy input itself {identity:.4f}")

    other = "tensorflow" if args.backend == "torch" else "torch"
    if importlib.util.find_spec(other) is None:
        print(f"(install {other} to see the trained network move to it and predict the same numbers)")
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "unet.npz"
        net.save(path)
        moved = HealpixUNet.load(path, backend=other)
    diff = np.max(np.abs(moved.predict(x_val) - net.predict(x_val)))
    print(f"saved from {args.backend}, loaded in {other}: predictions differ by {diff:.1e} at most")


if __name__ == "__main__":
    main()
