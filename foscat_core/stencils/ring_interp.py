"""HEALPix RING bilinear interpolation and NESTED -> RING ids, vectorised in NumPy.

The same arithmetic as healpix_cxx ``get_interpol`` / ``nest2ring`` (what healpy's
``get_interp_weights`` and ``nest2ring`` call), done on whole arrays: healpy's per-point ufuncs
cost ~250 ns (interpolation) and ~140 ns (renumbering) a point, most of a cold stencil build.
Integers are int64, geometry float64; ids equal healpy's, weights agree to round-off.
"""

import math

import numpy as np

_TWO_PI = 2.0 * np.pi
_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)  # face row, in nside units
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)  # face column, in pi/4 units
_MASKS = (0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x00FF00FF00FF00FF, 0x0000FFFF0000FFFF, 0x00000000FFFFFFFF)


class RingGeometry:
    """Ring geometry of one nside (rings 0..4*nside; 0 and 4*nside are the poles, never used),
    computed for the rings asked about only: tables over all 4*nside rings would not fit at the top
    nside (2**29), where regional domains still work.

    :meth:`rings` gives ``start``, ``count`` (int64): first RING id and number of cells of each
    ring, and ``shift`` (float64, 0.5 or 0): half-cell phi offset; :meth:`theta` the colatitude.
    """

    def __init__(self, nside):
        self.nside = nside
        self.npix = 12 * nside * nside

    def rings(self, ring):
        """``(start, count, shift)`` of the rings ``ring`` (int64 array)."""
        nside = self.nside
        north = np.where(ring > 2 * nside, 4 * nside - ring, ring)
        cap = north < nside
        count = np.where(cap, 4 * north, 4 * nside)
        start = np.where(cap, 2 * north * (north - 1), 2 * nside * (nside - 1) + (north - nside) * 4 * nside)
        start = np.where(north != ring, self.npix - start - count, start)
        shift = np.where(cap | ((north - nside) & 1 == 0), 0.5, 0.0)
        return start, np.maximum(count, 4), shift  # pole entries are placeholders: no division by zero

    def theta(self, ring):
        """Colatitudes of the rings ``ring`` (int64 array), float64."""
        nside, fact2 = self.nside, 4.0 / self.npix
        unique, inverse = np.unique(ring, return_inverse=True)
        north = np.where(unique > 2 * nside, 4 * nside - unique, unique)
        # Through libm (math), as healpix_cxx: NumPy's SIMD arccos may differ by an ulp, which the
        # theta weight divides by the ring spacing (~1e-13 at nside 256).
        theta = np.array([math.atan2(math.sqrt(t * (2.0 - t)), 1.0 - t) if n < nside else math.acos(a)
                          for t, a, n in zip(((north * north) * fact2).tolist(),
                                             ((2 * nside - north) * (2 * nside * fact2)).tolist(), north.tolist())],
                         dtype=np.float64)
        theta = np.where(north != unique, np.pi - theta, theta)
        return theta[inverse].reshape(np.shape(ring))

    def ring_above(self, z):
        """Index of the ring at or north of each ``z = cos(theta)`` (0: north of the first ring)."""
        nside, az = self.nside, np.abs(z)
        equator = (nside * (2.0 - 1.5 * z)).astype(np.int64)
        polar = (nside * np.sqrt(3.0 * (1.0 - az))).astype(np.int64)
        return np.where(az <= 2.0 / 3.0, equator, np.where(z > 0, polar, 4 * nside - polar - 1))

    def _pair(self, ring, phi):
        """The two cells of ``ring`` around ``phi`` and the phi weight of the second (eastern) one."""
        start, count, shift = self.rings(ring)
        dphi = _TWO_PI / count
        tmp = phi / dphi - shift
        i1 = tmp.astype(np.int64) - (tmp < 0)
        w1 = (phi - (i1 + shift) * dphi) / dphi
        i2 = i1 + 1
        i1 = np.where(i1 < 0, i1 + count, i1)
        i2 = np.where(i2 >= count, i2 - count, i2)
        return start + i1, start + i2, w1

    def interpolate(self, theta, phi):
        """RING ids and bilinear weights of points (theta in [0, pi], phi in [0, 2*pi]).

        Returns ``pix`` (int64) and ``w`` (float64), shape (4, M) like healpy's: two cells of
        the ring above, then two of the ring below.
        """
        nside = self.nside
        phi = np.where(phi >= _TWO_PI, phi - _TWO_PI, phi)  # healpy reduces phi modulo 2*pi
        ir1 = self.ring_above(np.cos(theta))
        ir2 = ir1 + 1
        pix = np.empty((4, theta.size), dtype=np.int64)
        w = np.empty((4, theta.size), dtype=np.float64)
        pix[0], pix[1], wa = self._pair(ir1, phi)
        pix[2], pix[3], wb = self._pair(ir2, phi)
        theta1, theta2 = self.theta(ir1), self.theta(ir2)
        wtheta = (theta - theta1) / (theta2 - theta1)
        np.multiply(1.0 - wa, 1.0 - wtheta, out=w[0])
        np.multiply(wa, 1.0 - wtheta, out=w[1])
        np.multiply(1.0 - wb, wtheta, out=w[2])
        np.multiply(wb, wtheta, out=w[3])
        cap = np.flatnonzero(ir1 == 0)  # north of the first ring: the far side of the pole
        if cap.size:
            wt = theta[cap] / theta2[cap]
            fac = (1.0 - wt) * 0.25
            w[0, cap] = w[1, cap] = fac
            w[2, cap] = (1.0 - wb[cap]) * wt + fac
            w[3, cap] = wb[cap] * wt + fac
            pix[0, cap], pix[1, cap] = (pix[2, cap] + 2) & 3, (pix[3, cap] + 2) & 3
        cap = np.flatnonzero(ir2 == 4 * nside)  # south of the last ring
        if cap.size:
            wt = (theta[cap] - theta1[cap]) / (np.pi - theta1[cap])
            fac = wt * 0.25
            w[0, cap] = (1.0 - wa[cap]) * (1.0 - wt) + fac
            w[1, cap] = wa[cap] * (1.0 - wt) + fac
            w[2, cap] = w[3, cap] = fac
            pix[2, cap] = ((pix[0, cap] + 2) & 3) + self.npix - 4
            pix[3, cap] = ((pix[1, cap] + 2) & 3) + self.npix - 4
        return pix, w


def _compact_bits(x):
    """Every other bit of ``x`` (bits 0, 2, 4, ...) packed together: the inverse Morton spread."""
    x = x & 0x5555555555555555
    for shift, mask in zip((1, 2, 4, 8, 16), _MASKS):
        x = (x | (x >> shift)) & mask
    return x


def nest2ring(nside, ids):
    """RING ids of NESTED ``ids`` (int64), as ``healpy.nest2ring``."""
    ids = np.asarray(ids, dtype=np.int64)
    order = nside.bit_length() - 1
    face = ids >> (2 * order)
    sub = ids & (nside * nside - 1)
    ix, iy = _compact_bits(sub), _compact_bits(sub >> 1)
    jr = _JRLL[face] * nside - ix - iy - 1  # ring index, 1..4*nside-1
    north = np.where(jr > 2 * nside, 4 * nside - jr, jr)
    cap = north < nside
    count = np.where(cap, north, nside)  # a quarter of the ring's cells
    start = np.where(cap, 2 * north * (north - 1), 2 * nside * (nside - 1) + (north - nside) * 4 * nside)
    start = np.where(north != jr, 12 * nside * nside - start - 4 * count, start)
    kshift = np.where(cap, 0, (jr - nside) & 1)  # 1 on the unshifted equatorial rings
    jp = (_JPLL[face] * count + ix - iy + 1 + kshift) // 2
    jp = np.where(jp < 1, jp + 4 * nside, jp)
    return start + jp - 1
