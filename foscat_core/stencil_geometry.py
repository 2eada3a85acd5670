"""Old path of :mod:`foscat_core.stencils.geometry`, still imported by ``foscat_core/scattering/operator.py``."""
from foscat_core.stencils.geometry import GAUGE_TYPES, compute_stencil  # noqa: F401
