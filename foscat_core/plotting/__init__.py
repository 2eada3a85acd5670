"""Implementation of :mod:`foscat_core.plot` (import that module; this package holds its parts)."""

from ._common import save
from .history import show_history
from .maps import show_map, show_maps
from .stats import show_statistics

__all__ = ["show_map", "show_maps", "show_statistics", "show_history", "save"]
