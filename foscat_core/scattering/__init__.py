"""Scattering covariance on the HEALPix sphere: ``funct`` (the operator) and its statistics object.

>>> import numpy as np
>>> from foscat_core.scattering import funct
>>> op = funct(KERNELSZ=3, NORIENT=2, backend="numpy")
>>> stat = op.eval(np.random.default_rng(0).normal(size=(2, 192)))
>>> stat.S2.shape          # (B, M, J, NORIENT)
(2, 1, 3, 2)
>>> float(stat.reduce_mean_batch((stat - stat.mean_batch()) ** 2)) >= 0
True
"""

from .compat import BackendCompat
from .distance import reduce_distance
from .operator import ScatteringCovariance, funct
from .statistics import ScatteringStatistics, scat_cov
from .wavelets import conv_kernel, morlet_bank

__all__ = ["ScatteringCovariance", "funct", "ScatteringStatistics", "scat_cov", "BackendCompat", "morlet_bank",
           "conv_kernel", "reduce_distance"]
