"""The band-power term of :meth:`Generator.fit <foscat_core.synthesis.Generator.fit>` (``spectrum=``).

Scattering coefficients constrain the power spectrum through wavelets that are wide in ell, and
the finest ones hardly see the power near ell ~ 2 nside; a generator matched on them alone can
miss an octave band by 20-50% (``benchmarks/README.md``). This term matches band powers per map,
in relative terms (``mean (log P_b - log P_b^target)**2``):

* the octaves ``ell`` in [2, 4), [4, 8), [8, 16) (those below ``nside``) exactly: the projections
  of the map on the real spherical harmonics of those degrees (``P_l^m(cos theta)`` times
  ``cos``/``sin(m phi)`` at the domain's cell centres, each of unit norm), one matrix product per
  batch (on a region they are not orthogonal: band powers of the cut sky, compared like for like);
* finer scales by Haar details (:class:`HaarBands`, split into the quads'
  gradients and checkerboard: the octave below 2 nside_k and the pixel scale) of the map with those
  low degrees removed (so the large-scale power of a red spectrum does not leak into them), at
  the levels from ``nside`` down to the one just above the exact octaves (``nside_k >= 16``, or
  ``>= 8`` when nside is 8): the detail between nside_k and nside_k / 2, about
  ell ~ nside_k .. 3 nside_k.

Only matrix products, gathers and sums: every backend, full sky or region, any ordering.
"""

import healpy as hp
import numpy as np

OCTAVES = ((2, 4), (4, 8), (8, 16))


class HaarBands:
    """Per map, the energy of its Haar details level by level: a differentiable, cheap stand-in
    for the power in octave bands of ell (the scattering coefficients of the finest scales hardly
    see the power near ell ~ 2 nside).

    The map is placed on the NESTED full sky (cells outside the domain weigh 0); at each level
    ``x_{k+1} = down(x_k)`` (the mean of the present children) and the detail
    ``d_k = x_k - up(x_{k+1})`` carries the power between the two resolutions (about the octave
    ``ell ~ nside_k .. 2 nside_k``); ``energies(x)`` (B, K) are ``mean(d_k**2)`` over the present
    cells, from ``nside`` down to nside 1 (K = log2 nside levels). Only gathers, reshapes and sums:
    every backend, any domain and ordering.

    With ``split=True`` each level gives two numbers instead, over the quads whose four cells are
    all present: the energy of the two gradients across a quad (north - south, east - west
    children, NESTED positions 3 - 0 and 1 - 2: about ell ~ nside_k .. 2 nside_k) and of its
    checkerboard (0 + 3 - 1 - 2: the pixel scale, ell > 2 nside_k), each over ``4 * quads``: a map
    can not trade power between the octave below 2 nside_k and the pixel scale unseen.
    """

    def __init__(self, nside, nested_ids, n_cells, min_nside=1, split=False):
        n_full = 12 * nside * nside
        index = np.full(n_full, n_cells, dtype=np.int64)  # the appended zero
        index[np.arange(n_cells) if nested_ids is None else nested_ids] = np.arange(n_cells)
        self.full = nested_ids is None
        self.index = index
        masks, m = [], (index < n_cells).astype(np.float64)
        while m.size > 12 * min_nside**2:
            c = m.reshape(-1, 4).sum(axis=1)
            whole = (c == 4).astype(np.float64)
            masks.append((m, 1.0 / np.maximum(c, 1e-30), 1.0 / max(m.sum(), 1.0), whole, 0.25 / max(whole.sum(), 1.0)))
            m = (c > 0).astype(np.float64)
        self.masks = masks
        self.split = split

    def to(self, bk, dtype):
        """The host tables as ``bk`` arrays (a copy of ``self`` holding them)."""
        other = object.__new__(HaarBands)
        other.full, other.split = self.full, self.split
        other.index = None if self.full else bk.asarray(self.index, dtype="int64")
        other.masks = [tuple(bk.asarray(a, dtype=dtype) if isinstance(a, np.ndarray) else a for a in t)
                       for t in self.masks]
        return other

    def energies(self, xp, x):
        b = int(x.shape[0])
        if not self.full:
            x = xp.take(xp.concat([x, x[:, :1] * 0.0], axis=1), self.index, axis=1)
        out = []
        for m, inv_count, inv_total, whole, inv_quads in self.masks:
            n = int(m.shape[0])
            xm = x * m
            quads = xp.reshape(xm, (b, n // 4, 4))
            down = xp.sum(quads, axis=2) * inv_count
            if self.split:
                q0, q1, q2, q3 = (quads[:, :, i] for i in range(4))
                grad, checker = (q3 - q0) ** 2 + (q1 - q2) ** 2, (q0 + q3 - q1 - q2) ** 2
                out.append(xp.sum(grad * whole, axis=1) * inv_quads)
                out.append(xp.sum(checker * whole, axis=1) * inv_quads)
            else:
                d = xm - xp.reshape(xp.reshape(down, (b, n // 4, 1)) * xp.reshape(m, (1, n // 4, 4)), (b, n))
                out.append(xp.sum(d * d, axis=1) * inv_total)
            x = down
        return xp.stack(out, axis=1)


def spectrum_distance(xp, energies, log_ref):
    """Mean over maps and levels of ``(log e - log e_ref)**2``: relative band-power errors."""
    return xp.mean((xp.log(energies + 1e-30) - log_ref) ** 2)


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
