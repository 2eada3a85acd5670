"""Oriented K x K stencils on the HEALPix sphere, computed with NumPy and healpy.

For every cell ``c`` of a domain, K*K points are laid on the plane tangent to the sphere at ``c``,
spaced by the mean pixel size ``sqrt(4*pi / Npix)``, in the local frame of the chosen gauge, and
projected back onto the sphere (gnomonic projection). Each point is interpolated bilinearly from
4 HEALPix cells (healpy's ring interpolation, vectorised in :mod:`.ring_interp`). Geometry is
float64, ids int64.

Layout of the P = K*K points: ``p = i*K + j`` where row ``i`` runs from the frame's +second axis
(north for the ``phi`` gauge) to its -second axis and column ``j`` from its -first axis (west) to its
+first axis (east), like an image with north up. Point ``p`` sits at tangent-plane offset
``(u, v) = (j - K//2, K//2 - i)`` pixels along the (first, second) axes.

Gauges (frame of gauge ``g`` of ``G``):

* ``"phi"``: first axis east (increasing phi), second axis north, then rotated by
  ``alpha_g = g*pi/G`` counter-clockwise seen from outside the sphere. Singular at the poles.
* ``"cosmo"``: the ``phi`` frame rotated by ``alpha_g - s*phi`` with ``s = +1`` on the northern
  hemisphere (z >= 0) and ``s = -1`` on the southern one. Near each pole this frame tends to a fixed
  direction in 3-D (the pole's frame is smooth), which removes the polar singularity.
"""

import contextlib
import mmap
import os
from concurrent.futures import ThreadPoolExecutor

import healpy as hp
import numpy as np

from .._validation import check_kernel_size
from .full_sky import base_face_cells, fill_rotated_faces
from .ring_interp import RingGeometry, nest2ring

GAUGE_TYPES = ("phi", "cosmo")
_CHUNK_POINTS = 8192  # stencil points per chunk: its ~30 float64 temporaries stay in L2
_FRESH_PAGES_FROM = 1 << 22  # bytes: NumPy's threshold for huge-page advice
_DENSE_SPAN = 64  # dense RING-id lookup while its span is at most this many times the domain

# In-domain interpolation weight below which a stencil point counts as outside the domain.
_NO_NEIGHBOUR = 1e-12


def pixel_size(nside):
    """Mean angular size of a cell in radians: sqrt(4*pi / (12*nside**2))."""
    return np.sqrt(np.pi / 3.0) / nside


def tap_offsets(kernel_sz):
    """The tap layout, defined here once: tangent-plane offsets in pixels of the P = K*K taps.

    Returns
    -------
    u, v : ndarray of float64, shape (P,)
        East (first axis) and north (second axis) offsets of tap ``p = i*K + j``:
        ``u = j - K//2``, ``v = K//2 - i`` (an image with north up, see the module docstring).

    >>> tap_offsets(3)[1].reshape(3, 3)[:, 0]
    array([ 1.,  0., -1.])
    """
    k = check_kernel_size(kernel_sz)
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    return (j - k // 2).reshape(-1).astype(np.float64), (k // 2 - i).reshape(-1).astype(np.float64)


def gauge_angles(theta, phi, z, gauge_type, n_gauges):
    """Frame angle of each gauge at each cell, shape (G, N), radians."""
    base = np.arange(n_gauges, dtype=np.float64)[:, None] * (np.pi / n_gauges)
    if gauge_type == "phi":
        return np.broadcast_to(base, (n_gauges, theta.size))
    hemisphere = np.where(z >= 0.0, 1.0, -1.0)
    return base - hemisphere[None, :] * phi[None, :]


def compute_stencil(domain, kernel_sz, gauge_type="phi", n_gauges=1):
    """Interpolation table of the oriented stencil of every cell of ``domain``.

    Parameters
    ----------
    domain : Domain
    kernel_sz : int
        Odd K; P = K*K points per cell.
    gauge_type : {"phi", "cosmo"}
    n_gauges : int
        G; gauge ``g`` is rotated by ``g*pi/G``.

    Returns
    -------
    index : ndarray of int64, shape (G, N, P, 4)
        Positions (in ``domain.cell_ids``) of the 4 cells each point is interpolated from.
    weight : ndarray of float64, shape (G, N, P, 4)
        Bilinear weights; each (g, n, p) row sums to 1. On a regional domain, cells outside the
        domain get weight 0 and the rest are renormalised; a point with no cell inside falls back
        to the centre cell (weight 1). The full sky is computed on base faces 0, 4 and 8 and
        rotated onto the other nine (:mod:`.full_sky`).
    """
    if gauge_type not in GAUGE_TYPES:
        raise ValueError(f"gauge_type must be one of {GAUGE_TYPES}, got {gauge_type!r}")
    n_cells, n_points = domain.n_cells, kernel_sz * kernel_sz
    index = _fresh_array((n_gauges, n_cells, n_points, 4), np.int64)
    weight = _fresh_array((n_gauges, n_cells, n_points, 4), np.float64)
    step = max(1, _CHUNK_POINTS // max(n_points - 1, 1))
    # The full sky is computed on faces 0, 4 and 8 and copied by rotation to the others.
    spans = base_face_cells(domain.nside) if domain.is_full_sky else [slice(0, n_cells)]
    chunks = [slice(s, min(s + step, span.stop)) for span in spans for s in range(span.start, span.stop, step)]
    # Small chunks keep every temporary in L2 and reuse the allocator's memory instead of fresh
    # pages (several times faster than large ones); NumPy releases the GIL, so threads use every core.
    workers = min(len(chunks), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else contextlib.nullcontext() as pool:
        run = map if pool is None else pool.map
        rings, positions = RingGeometry(domain.nside), _RingPositions(domain, run)
        list(run(lambda cells: _stencil_chunk(domain, rings, positions, cells, kernel_sz, gauge_type, index, weight),
                 chunks))
        if domain.is_full_sky:
            fill_rotated_faces(index, weight, domain.nside, kernel_sz, gauge_type, run)
    return index, weight


def _fresh_array(shape, dtype):
    """``np.empty(shape, dtype)``, large ones in 4 KiB pages.

    NumPy advises transparent huge pages for large arrays; the kernel may then compact memory
    to find them on first touch. For a table written once, 4 KiB pages are faster to obtain:
    a fresh 450 MB table (nside 256) took 0.5-0.9 s to fill with huge pages and 0.2 s without
    on the 2-core VM of benchmarks/README.md.
    """
    n_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if n_bytes < _FRESH_PAGES_FROM:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, n_bytes), dtype=dtype).reshape(shape)


class _RingPositions:
    """Positions in ``domain.cell_ids`` of RING ids, found without going back to NESTED ids.

    A dense table over the span of the domain's RING ids (-1: not in the domain) when that span
    is at most ``_DENSE_SPAN`` times the domain (a full sky, a disc), else a sorted search.
    """

    def __init__(self, domain, run=map):
        ids, ring = domain.cell_ids, np.empty(domain.n_cells, dtype=np.int64)

        def renumber(cells):
            ring[cells] = nest2ring(domain.nside, ids[cells])

        list(run(renumber, [slice(s, s + _CHUNK_POINTS) for s in range(0, ids.size, _CHUNK_POINTS)]))
        self.full_sky = domain.is_full_sky
        self.low = int(ring.min())
        span = int(ring.max()) + 1 - self.low
        self.table = self.order = None
        if span <= _DENSE_SPAN * ring.size:
            self.table = np.full(span, -1, dtype=np.int64)
            self.table[ring - self.low] = np.arange(ring.size, dtype=np.int64)
        else:
            self.order = np.argsort(ring, kind="stable")
            self.sorted = ring[self.order]

    def __call__(self, ring_ids):
        """Positions (0 where absent) and the mask of ids in the domain."""
        if self.full_sky:
            return self.table[ring_ids], None
        if self.table is not None:
            slot = ring_ids - self.low
            inside = (slot >= 0) & (slot < self.table.size)
            pos = self.table[np.where(inside, slot, 0)]
            present = inside & (pos >= 0)
        else:
            slot = np.minimum(np.searchsorted(self.sorted, ring_ids), self.sorted.size - 1)
            present = self.sorted[slot] == ring_ids
            pos = self.order[slot]
        return np.where(present, pos, 0), present


def _stencil_chunk(domain, rings, positions, cells, kernel_sz, gauge_type, index, weight):
    """Fill ``index[:, cells]`` and ``weight[:, cells]``: the cells ``domain.cell_ids[cells]``."""
    ids = domain.cell_ids[cells]
    n_points = kernel_sz * kernel_sz
    centre = n_points // 2
    centre_pos = np.arange(cells.start, cells.start + ids.size, dtype=np.int64)
    index[:, cells, centre, :] = centre_pos[None, :, None]
    weight[:, cells, centre, :] = (1.0, 0.0, 0.0, 0.0)
    if n_points == 1:
        return
    theta, phi = hp.pix2ang(domain.nside, ids, nest=True)
    cos_t, sin_t, cos_p, sin_p = np.cos(theta), np.sin(theta), np.cos(phi), np.sin(phi)
    # Unit normal, east and north vectors of each cell, one Cartesian component per column.
    frame = ((sin_t * cos_p, -sin_p, -cos_t * cos_p), (sin_t * sin_p, cos_p, -cos_t * sin_p), (cos_t, None, sin_t))
    u, v = tap_offsets(kernel_sz)
    u, v = np.delete(u, centre), np.delete(v, centre)
    angles = gauge_angles(theta, phi, cos_t, gauge_type, index.shape[0])
    for g, angle in enumerate(angles):
        pos, w = _interpolate_points(rings, positions, frame, angle, u, v, pixel_size(domain.nside))
        orphan = np.flatnonzero(w[0] < 0.0)
        if orphan.size:  # no interpolation cell in the domain: the centre cell instead
            pos[:, orphan] = centre_pos[orphan // u.size]
            w[:, orphan] = np.array([[1.0], [0.0], [0.0], [0.0]])
        pos = pos.reshape(4, ids.size, u.size).transpose(1, 2, 0)
        w = w.reshape(4, ids.size, u.size).transpose(1, 2, 0)
        index[g, cells, :centre], index[g, cells, centre + 1:] = pos[:, :centre], pos[:, centre:]
        weight[g, cells, :centre], weight[g, cells, centre + 1:] = w[:, :centre], w[:, centre:]


def _interpolate_points(rings, positions, frame, angle, u, v, step):
    """Positions and weights, shape (4, N*P'), of the off-centre stencil points of one gauge.

    A point with no interpolation cell inside the domain is flagged with weight -1 in its
    first slot, for the caller to redirect to the centre cell.
    """
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    # Tangent-plane point c + step*(u*axis1 + v*axis2), one Cartesian component at a time;
    # axis1 = ca*east + sa*north, axis2 = -sa*east + ca*north.
    coef_e = step * (u[None, :] * ca - v[None, :] * sa)  # (N, P')
    coef_n = step * (u[None, :] * sa + v[None, :] * ca)
    x, y, z = (normal[:, None] + (0.0 if east is None else coef_e * east[:, None]) + coef_n * north[:, None]
               for normal, east, north in frame)
    norm = np.sqrt(x * x + y * y + z * z)
    pts_theta = np.arccos(np.clip(z / norm, -1.0, 1.0)).reshape(-1)
    pts_phi = np.arctan2(y, x).reshape(-1)
    pts_phi[pts_phi < 0] += 2 * np.pi
    ring_ids, w = rings.interpolate(pts_theta, pts_phi)
    np.maximum(w, 0.0, out=w)  # drop round-off negatives (~1e-15) so weights stay convex
    pos, present = positions(ring_ids)
    if present is not None:
        w *= present
    total = ((w[0] + w[1]) + w[2]) + w[3]
    if present is None:
        return pos, np.divide(w, total, out=w)
    # A point whose in-domain weight is round-off (it sits on a cell outside the domain)
    # has no neighbour inside: renormalising it would let round-off pick a cell.
    inside = total > _NO_NEIGHBOUR
    w = np.divide(w, total, out=np.zeros_like(w), where=inside)
    w[0, ~inside] = -1.0
    return pos, w
