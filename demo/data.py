"""The demo's data: CMB-like temperature fields observed through noise and a mask.

Fields are Gaussian random fields drawn with healpy from the CMB temperature power spectrum
that healpy ships (``healpy/data/totcls.dat``, D_ell in uK^2), so nothing is downloaded.
"""

import os

import healpy as hp
import numpy as np


def cmb_spectrum(lmax):
    """C_ell (uK^2) for ell = 0..lmax from healpy's bundled ``totcls.dat``."""
    table = np.loadtxt(os.path.join(os.path.dirname(hp.__file__), "data", "totcls.dat"))
    ell, d_ell = table[: lmax + 1, 0], table[: lmax + 1, 1]
    cl = np.zeros(lmax + 1)
    cl[2:] = 2.0 * np.pi * d_ell[2:] / (ell[2:] * (ell[2:] + 1.0))
    return cl


def region(nside, radius_deg=30.0, theta=np.pi / 2, phi=0.0):
    """NESTED ids of a disc (the demo's regional domain), ascending."""
    return hp.query_disc(nside, hp.ang2vec(theta, phi), np.radians(radius_deg), nest=True).astype(np.int64)


def draw_fields(n_maps, nside, cell_ids, seed):
    """``n_maps`` CMB-like maps on ``cell_ids``, (n_maps, N_cells) float64, in units of the
    spectrum's rms (so values are O(1))."""
    cl = cmb_spectrum(3 * nside - 1)
    rng = np.random.default_rng(seed)
    maps = np.empty((n_maps, len(cell_ids)))
    for i in range(n_maps):
        np.random.seed(int(rng.integers(2**31)))  # healpy.synalm draws from NumPy's global generator
        alm = hp.synalm(cl, lmax=3 * nside - 1, new=True)
        maps[i] = hp.reorder(hp.alm2map(alm, nside), r2n=True)[cell_ids]
    rms = np.sqrt(np.sum((2 * np.arange(len(cl)) + 1) * cl) / (4 * np.pi))
    return maps / rms


def observation_mask(nside, cell_ids, fraction=0.2, seed=7):
    """A fixed 0/1 mask hiding about ``fraction`` of the region in a few smooth blobs (clouds)."""
    rng = np.random.default_rng(seed)
    npix = 12 * nside**2
    blobs = np.zeros(npix)
    vec = np.array(hp.pix2vec(nside, np.arange(npix), nest=True))
    for _ in range(6):
        centre = np.array(hp.pix2vec(nside, int(rng.choice(cell_ids)), nest=True))
        blobs += np.exp(-(1.0 - centre @ vec) / 0.01)
    values = blobs[cell_ids] + 1e-3 * rng.normal(size=len(cell_ids))
    threshold = np.quantile(values, 1.0 - fraction)
    return (values < threshold).astype(np.float64)


def observe(clean, mask, noise, seed):
    """Network inputs (n, 2, N): the noisy field where observed (0 in the gaps) and the mask."""
    rng = np.random.default_rng(seed)
    noisy = (clean + noise * rng.normal(size=clean.shape)) * mask
    return np.stack([noisy, np.broadcast_to(mask, clean.shape)], axis=1)
