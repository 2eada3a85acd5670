"""The band-power term of :meth:`Generator.fit <foscat_core.synthesis.Generator.fit>` (``spectrum=``).

Scattering coefficients constrain the power spectrum through wavelets that are wide in ell, and
the finest ones hardly see the power near ell ~ 2 nside; a generator matched on them alone can
miss an octave band by 20-50% (``benchmarks/README.md``). This term matches band powers per map,
in relative terms (``mean (log P_b - log P_b^target)**2``):

* the octaves ``ell`` in [2, 4), [4, 8), [8, 16) (those below ``nside``) exactly: the projections
  of the map on the real spherical harmonics of those degrees (``P_l^m(cos theta)`` times
  ``cos``/``sin(m phi)`` at the domain's cell centres, each of unit norm), one matrix product per
  batch (on a region they are not orthogonal: band powers of the cut sky, compared like for like);
* finer scales by Haar details (:class:`~.generator_training.HaarBands`, split into the quads'
  gradients and checkerboard: the octave below 2 nside_k and the pixel scale) of the map with those
  low degrees removed (so the large-scale power of a red spectrum does not leak into them), at
  the levels from ``nside`` down to the one just above the exact octaves (``nside_k >= 16``, or
  ``>= 8`` when nside is 8): the detail between nside_k and nside_k / 2, about
  ell ~ nside_k .. 3 nside_k.

Only matrix products, gathers and sums: every backend, full sky or region, any ordering.
"""

import healpy as hp
import numpy as np

from .generator_training import HaarBands

OCTAVES = ((2, 4), (4, 8), (8, 16))


def harmonic_basis(nside, nested_ids, lmax):
    """Real spherical harmonics of degrees 2..lmax, ``P_l^m(cos theta) cos(m phi)`` and
    ``.. sin(m phi)``, as rows (n, N_cells) on the domain's cell centres (NESTED ``nested_ids``;
    ``None``: the NESTED full sky), each of unit norm over those cells, and their degrees."""
    from scipy.special import lpmv

    ids = np.arange(12 * nside * nside) if nested_ids is None else np.asarray(nested_ids)
    theta, phi = hp.pix2ang(nside, ids, nest=True)
    cos_t = np.cos(theta)
    rows, degrees = [], []
    for ell in range(2, lmax + 1):
        for m in range(ell + 1):
            p = lpmv(m, ell, cos_t)
            for v in ((p,) if m == 0 else (p * np.cos(m * phi), p * np.sin(m * phi))):
                rows.append(v / max(np.linalg.norm(v), 1e-30))
                degrees.append(ell)
    return np.asarray(rows), np.asarray(degrees)


class BandPowers:
    """``energies(xp, x)`` (B, n_bands): the band powers the ``spectrum`` term compares (see the
    module docstring)."""

    def __init__(self, nside, nested_ids, n_cells):
        octaves = [(lo, hi) for lo, hi in OCTAVES if hi <= max(nside, 4)]
        lmax = octaves[-1][1] - 1
        basis, degrees = harmonic_basis(nside, nested_ids, lmax)
        self.basis = basis
        self.slices = []  # degrees ascending: each octave a contiguous run of rows
        for lo, hi in octaves:
            rows = np.flatnonzero((degrees >= lo) & (degrees < hi))
            self.slices.append((int(rows[0]), int(rows[-1]) + 1))
        self.haar = HaarBands(nside, nested_ids, n_cells, min_nside=octaves[-1][1] // 2, split=True)

    def to(self, bk, dtype):
        other = object.__new__(BandPowers)
        other.basis = bk.asarray(self.basis, dtype=dtype)
        other.slices = self.slices
        other.haar = self.haar.to(bk, dtype)
        return other

    def energies(self, xp, x):
        a = xp.matmul(x, xp.permute_dims(self.basis, (1, 0)))  # (B, n_basis)
        low = [xp.sum(a[:, s0:s1] ** 2, axis=1) for s0, s1 in self.slices]
        parts = [xp.stack(low, axis=1)]
        if self.haar.masks:
            parts.append(self.haar.energies(xp, x - xp.matmul(a, self.basis)))
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)


__all__ = ["BandPowers", "OCTAVES", "harmonic_basis"]
