"""The scales of the scattering operator: one domain, stencil and mask per level of the NESTED pyramid."""

from dataclasses import dataclass, field

import numpy as np

from foscat_core.domain import Domain
from foscat_core.pyramid_ops import down
from foscat_core.stencil import SphericalStencil


# A scale is only added while the coarser domain still has at least this many cells
# (12 = the full sky at nside 1).
MIN_CELLS = 12


@dataclass
class Level:
    """Scale ``j`` of a pyramid.

    Attributes
    ----------
    nside : int
        ``nside_0 / 2**j``.
    cell_ids : ndarray of int64, shape (N_j,), or None
        The cells of the scale (``None`` = full sky); scale 0 keeps the user's order, coarser
        scales are the sorted parents of the finer one.
    stencil : SphericalStencil or None
        Built on first use.
    """

    nside: int
    cell_ids: object
    n_cells: int
    stencil: object = None
    uniform_weight: object = field(default=None, repr=False)


def count_scales(nside, cell_ids):
    """How many scales a domain allows: down to nside 1, stopping before a level under MIN_CELLS cells."""
    domain = Domain(nside, cell_ids)
    n_scales, ids, ns = 1, domain.cell_ids, domain.nside
    full = cell_ids is None
    while ns > 1:
        parents = None if full else np.unique(ids // 4)
        n_parent = 12 * (ns // 2) ** 2 if full else parents.size
        if n_parent < MIN_CELLS:
            break
        n_scales, ns, ids = n_scales + 1, ns // 2, parents
    return n_scales


def build_levels(nside, cell_ids, n_scales):
    """The ``n_scales`` levels of a domain (``cell_ids`` checked by :class:`Domain`)."""
    domain = Domain(nside, cell_ids)
    ids = None if cell_ids is None else domain.cell_ids
    levels = []
    ns = domain.nside
    for j in range(n_scales):
        n = 12 * ns * ns if ids is None else int(ids.size)
        levels.append(Level(ns, ids, n))
        if ids is not None:
            ids = np.unique(ids // 4)
        ns //= 2
    return levels


def level_stencil(level, kernel_sz, gauge_type, backend, dtype):
    if level.stencil is None:
        level.stencil = SphericalStencil(level.nside, kernel_sz, cell_ids=level.cell_ids, gauge_type=gauge_type,
                                         backend=backend, dtype=dtype)
    return level.stencil


def level_filter(level, kernel_sz, gauge_type, backend, dtype):
    """The level's stencil, whose :meth:`~foscat_core.SphericalStencil.filter` applies the bank."""
    return level_stencil(level, kernel_sz, gauge_type, backend, dtype)


def mask_pyramid(mask, levels):
    """Per-scale weights from a host mask: mean ``down`` from one level to the next, rows normalised.

    Parameters
    ----------
    mask : ndarray of float64, shape (M, N_0)
        Non-negative weights, every row with a positive sum.
    levels : list of Level

    Returns
    -------
    list of ndarray of float64, shape (M, N_j)
        ``w_j[m] = mask_j[m] / sum(mask_j[m])``.
    """
    out = []
    current = mask
    for j, level in enumerate(levels):
        if j > 0:
            prev = levels[j - 1]
            current, _ = down(current, prev.nside, prev.cell_ids, mode="mean", backend="numpy")
        out.append(current / current.sum(axis=1, keepdims=True))
    return out
