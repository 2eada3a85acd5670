"""Old path of :mod:`foscat_core.stencils.cache`, still imported by ``foscat_core/__init__.py``."""
from foscat_core.stencils.cache import cache_dir, clear_memory_cache  # noqa: F401
