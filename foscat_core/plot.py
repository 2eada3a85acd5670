"""Maps you can look at: HEALPix maps, scattering statistics and loss curves as matplotlib figures.

Needs matplotlib (``pip install 'foscat_core[plot]'``); ``import foscat_core`` does not import it,
this module is imported explicitly (``from foscat_core import plot``). Works headless (the Agg
backend is chosen on a Linux machine with no display unless a backend was already chosen) and never
calls ``plt.show()`` unless asked (``show=True``). Every drawing function returns its Figure.

Maps are rasterised by this module (not by healpy's ``mollview``/``gnomview``), so they compose into
any Axes: north up, east (increasing longitude) to the right, as in geography.

>>> import numpy as np
>>> from foscat_core import plot
>>> fig = plot.show_map(np.arange(768.0), nside=8, title="cell index")
>>> fig.axes[0].images[0].get_array().shape
(400, 800)
"""

from foscat_core.plotting import save, show_history, show_map, show_maps, show_statistics

__all__ = ["show_map", "show_maps", "show_statistics", "show_history", "save"]
