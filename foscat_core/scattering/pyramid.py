"""The scales of the scattering operator: one domain, stencil and mask per level of the NESTED pyramid.

The levels are the :meth:`~foscat_core.Domain.pyramid` of the map's domain: each coarser domain is
computed once (cached on the finer one) and shared by the level's stencil and down plan.
"""

from dataclasses import dataclass, field

from foscat_core.ordering import as_domain
from foscat_core.pyramid_ops import DownPlan
from foscat_core.stencils import SphericalStencil
from foscat_core.stencils.depthwise import DepthwiseFilter


# A scale is only added while the coarser domain still has at least this many cells
# (12 = the full sky at nside 1).
MIN_CELLS = 12


@dataclass(eq=False)
class Level:
    """Scale ``j`` of a pyramid.

    Attributes
    ----------
    domain : Domain
        The cells of the scale; scale 0 keeps the user's order, coarser scales are the sorted
        parents of the finer one (``domain_j = domain_{j-1}.parent()``, the same object).
    stencil : SphericalStencil or None
        Built on first use.
    depthwise : DepthwiseFilter or None
        The stencil's depthwise filter (see :func:`level_filter`), built on first use.
    nside : int
        ``nside_0 / 2**j``.
    cell_ids : ndarray of int64, shape (N_j,), or None
        ``domain.cell_ids``, ``None`` for the full sky.
    n_cells : int
    """

    domain: object
    stencil: object = None
    depthwise: object = field(default=None, repr=False)
    uniform_weight: object = field(default=None, repr=False)
    _down: object = field(default=None, repr=False)

    @property
    def nside(self):
        return self.domain.nside

    @property
    def cell_ids(self):
        return None if self.domain.is_full_sky else self.domain.cell_ids

    @property
    def n_cells(self):
        return self.domain.n_cells

    @property
    def down_plan(self):
        """The :class:`~foscat_core.pyramid_ops.DownPlan` from this scale to the next, built once."""
        if self._down is None:
            self._down = DownPlan(self.domain)
        return self._down


def scale_domains(domain):
    """The domains of every scale ``domain`` allows: down to nside 1, stopping before a level
    under :data:`MIN_CELLS` cells. Tuple of Domain, ``domain`` first."""
    levels = [domain]
    while levels[-1].nside > 1:
        parent = levels[-1].parent()
        if parent.n_cells < MIN_CELLS:
            break
        levels.append(parent)
    return tuple(levels)


def count_scales(nside, cell_ids=None):
    """How many scales a domain allows (see :func:`scale_domains`); ``nside`` may be a Domain."""
    return len(scale_domains(as_domain(nside, cell_ids)))


def build_levels(nside, cell_ids, n_scales):
    """The ``n_scales`` levels of a domain; ``nside`` may be a Domain (then ``cell_ids`` is None),
    otherwise ``cell_ids`` are checked once here. ``n_scales`` must not exceed :func:`count_scales`."""
    return [Level(dom) for dom in as_domain(nside, cell_ids).pyramid(n_scales)]


def level_stencil(level, kernel_sz, gauge_type, backend, dtype):
    if level.stencil is None:
        level.stencil = SphericalStencil(level.domain, kernel_sz, gauge_type=gauge_type, backend=backend, dtype=dtype)
    return level.stencil


def level_filter(level, kernel_sz, gauge_type, backend, dtype):
    """The level's :class:`~foscat_core.stencils.depthwise.DepthwiseFilter` (its ``filter`` applies
    the bank, as :meth:`~foscat_core.SphericalStencil.filter` does, on native maps already checked),
    built once with everything its products read, forward and backward
    (:meth:`Backend.prepare_matmul`): a traced call (``torch.compile``) then builds nothing."""
    if level.depthwise is None:
        depthwise = DepthwiseFilter(level_stencil(level, kernel_sz, gauge_type, backend, dtype))
        depthwise.backend.prepare_matmul(depthwise.op)
        level.depthwise = depthwise
    return level.depthwise


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
            current = levels[j - 1].down_plan(current, "mean", "numpy")
        out.append(current / current.sum(axis=1, keepdims=True))
    return out
