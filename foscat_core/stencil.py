"""Old path of :mod:`foscat_core.stencils.stencil`, still imported by ``foscat_core/__init__.py``."""
from foscat_core.stencils.stencil import SphericalStencil  # noqa: F401
