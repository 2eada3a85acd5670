"""foscat_core: deep learning and scattering statistics on the HEALPix sphere (NESTED ordering).

One codebase for NumPy, PyTorch and TensorFlow; importing this package imports no framework.

>>> import numpy as np, foscat_core as fc
>>> st = fc.SphericalStencil(nside=8, kernel_sz=3, backend="numpy")
>>> y = st.conv(np.ones((1, 2, 768), "float32"), np.full((2, 4, 9), 1 / 18, "float32"))
>>> y.shape
(1, 4, 768)
"""

from foscat_core.backends import get_backend, set_backend

from .allocator import keep_freed_memory
from .domain import Domain
from .pyramid_ops import down, ud_grade_2, up, up_grade
from .stencils import SphericalStencil, cache_dir, clear_memory_cache

__version__ = "0.1.0"

__all__ = [
    "Domain",
    "SphericalStencil",
    "down",
    "up",
    "ud_grade_2",
    "up_grade",
    "get_backend",
    "set_backend",
    "cache_dir",
    "clear_memory_cache",
    "keep_freed_memory",
    "__version__",
]
