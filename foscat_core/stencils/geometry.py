"""Oriented K x K stencils on the HEALPix sphere, computed with NumPy and healpy.

For every cell ``c`` of a domain, K*K points are laid on the plane tangent to the sphere at ``c``,
spaced by the mean pixel size ``sqrt(4*pi / Npix)``, in the local frame of the chosen gauge, and
projected back onto the sphere (gnomonic projection). Each point is interpolated bilinearly from
4 HEALPix cells (healpy's ring interpolation). Geometry is float64, ids int64.

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

import os
from concurrent.futures import ThreadPoolExecutor

import healpy as hp
import numpy as np

from .._validation import check_kernel_size

GAUGE_TYPES = ("phi", "cosmo")
_CHUNK_CELLS = 8192

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
        to the centre cell (weight 1).
    """
    if gauge_type not in GAUGE_TYPES:
        raise ValueError(f"gauge_type must be one of {GAUGE_TYPES}, got {gauge_type!r}")
    n_cells, n_points = domain.n_cells, kernel_sz * kernel_sz
    index = np.empty((n_gauges, n_cells, n_points, 4), dtype=np.int64)
    weight = np.empty((n_gauges, n_cells, n_points, 4), dtype=np.float64)
    domain.locate(domain.cell_ids[:1])  # build the sorted lookup once, before the threads share it
    chunks = [slice(s, min(s + _CHUNK_CELLS, n_cells)) for s in range(0, n_cells, _CHUNK_CELLS)]

    def fill(cells):
        index[:, cells], weight[:, cells] = _stencil_chunk(domain, cells, kernel_sz, gauge_type, n_gauges)

    # Chunks keep the temporaries in cache (several times faster than one pass over all
    # cells) and let NumPy and healpy, which release the GIL, use every core.
    if len(chunks) == 1:
        fill(chunks[0])
    else:
        with ThreadPoolExecutor(max_workers=min(len(chunks), os.cpu_count() or 1)) as pool:
            list(pool.map(fill, chunks))
    return index, weight


def _stencil_chunk(domain, cells, kernel_sz, gauge_type, n_gauges):
    """compute_stencil restricted to the cells ``domain.cell_ids[cells]``, positions global."""
    nside = domain.nside
    ids = domain.cell_ids[cells]
    n_cells, n_points = ids.size, kernel_sz * kernel_sz
    centre = n_points // 2
    centre_pos = np.arange(cells.start, cells.start + n_cells, dtype=np.int64)
    theta, phi = hp.pix2ang(nside, ids, nest=True)
    cos_t, sin_t, cos_p, sin_p = np.cos(theta), np.sin(theta), np.cos(phi), np.sin(phi)
    normal = np.stack([sin_t * cos_p, sin_t * sin_p, cos_t], axis=-1)
    east = np.stack([-sin_p, cos_p, np.zeros_like(phi)], axis=-1)
    north = np.stack([-cos_t * cos_p, -cos_t * sin_p, sin_t], axis=-1)
    u, v = tap_offsets(kernel_sz)
    off = np.arange(n_points) != centre
    u, v = u[off], v[off]
    angles = gauge_angles(theta, phi, normal[:, 2], gauge_type, n_gauges)

    index = np.empty((n_gauges, n_cells, n_points, 4), dtype=np.int64)
    weight = np.zeros((n_gauges, n_cells, n_points, 4), dtype=np.float64)
    index[:, :, centre, :] = centre_pos[None, :, None]
    weight[:, :, centre, 0] = 1.0
    if n_points == 1:
        return index, weight
    for g in range(n_gauges):
        pos, w = _interpolate_points(domain, normal, east, north, angles[g], u, v, pixel_size(nside))
        orphan = w[..., 0] < 0.0
        pos[orphan] = centre_pos[:, None].repeat(u.size, axis=1)[orphan][:, None]
        w[orphan] = (1.0, 0.0, 0.0, 0.0)
        index[g][:, off] = pos
        weight[g][:, off] = w
    return index, weight


def _interpolate_points(domain, normal, east, north, angle, u, v, step):
    """Positions and weights, shape (N, P', 4), of the off-centre stencil points of one gauge.

    A point with no interpolation cell inside the domain is flagged with weight -1 in its
    first slot, for the caller to redirect to the centre cell.
    """
    nside, n_cells, n_off = domain.nside, normal.shape[0], u.size
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    # Tangent-plane point c + step*(u*axis1 + v*axis2), one Cartesian component at a time to
    # keep the (N, P') temporaries small; axis1 = ca*east + sa*north, axis2 = -sa*east + ca*north.
    coef_e = step * (u[None, :] * ca - v[None, :] * sa)  # (N, P')
    coef_n = step * (u[None, :] * sa + v[None, :] * ca)
    comps = [normal[:, k:k + 1] + coef_e * east[:, k:k + 1] + coef_n * north[:, k:k + 1] for k in range(3)]
    x, y, z = comps
    norm = np.sqrt(x * x + y * y + z * z)
    pts_theta = np.arccos(np.clip(z / norm, -1.0, 1.0)).reshape(-1)
    pts_phi = np.arctan2(y, x).reshape(-1)
    pts_phi[pts_phi < 0] += 2 * np.pi
    # healpy interpolates much faster in RING; convert the 4 ids to NESTED afterwards.
    ring_ids, w = hp.get_interp_weights(nside, pts_theta, pts_phi, nest=False)
    nest_ids = hp.ring2nest(nside, ring_ids).T  # (N*P', 4)
    w = np.maximum(w.T, 0.0)  # drop round-off negatives (~1e-15) so weights stay convex
    if domain.is_full_sky:
        pos = nest_ids
        w = w / w.sum(axis=1, keepdims=True)
    else:
        pos, present = domain.locate(nest_ids)
        w = w * present
        total = w.sum(axis=1, keepdims=True)
        # A point whose in-domain weight is round-off (it sits on a cell outside the domain)
        # has no neighbour inside: renormalising it would let round-off pick a cell.
        inside = total > _NO_NEIGHBOUR
        w = np.divide(w, total, out=np.zeros_like(w), where=inside)
        w[~inside[:, 0], 0] = -1.0
    return pos.reshape(n_cells, n_off, 4), w.reshape(n_cells, n_off, 4)
