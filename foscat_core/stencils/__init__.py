"""Oriented K x K stencils on HEALPix domains, in one place.

* :mod:`~foscat_core.stencils.geometry`: the tap layout and the interpolation tables (NumPy, healpy);
* :mod:`~foscat_core.stencils.cache`: those tables kept in memory and on disk;
* :mod:`~foscat_core.stencils.stencil`: :class:`SphericalStencil`, the convolution built on them;
* :mod:`~foscat_core.stencils.depthwise`: its interpolate-then-filter form for wavelet banks.

Every stencil is built on a :class:`~foscat_core.Domain` and uses its ids as they are.
"""

from .cache import cache_dir, clear_memory_cache, stencil_table
from .geometry import GAUGE_TYPES, compute_stencil, tap_offsets
from .stencil import SphericalStencil

__all__ = ["GAUGE_TYPES", "SphericalStencil", "cache_dir", "clear_memory_cache", "compute_stencil", "stencil_table",
           "tap_offsets"]
