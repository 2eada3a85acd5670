"""Loss and Synthesis: L-BFGS-B synthesis of HEALPix maps, written once for every autograd backend.

>>> from foscat_core.synthesis import Loss, Synthesis

A :class:`Loss` wraps a user function ``function(x, scat_op, args)`` that returns a backend
scalar; :class:`Synthesis` sums the losses and minimises them with scipy's L-BFGS-B on a float64
host vector, the gradient coming from the backend's autograd (torch, TensorFlow or JAX; compiled
with ``tf.function`` / ``jax.jit`` where the losses allow it).
"""

from .loss import BackendOnly, Loss
from .synthesis import SYNTHESIS_BACKENDS, Synthesis
from .generator import Generator
from .histogram import histogram_distance
from .morphology import morphology_distance

__all__ = ["Loss", "BackendOnly", "Synthesis", "SYNTHESIS_BACKENDS", "Generator", "histogram_distance",
           "morphology_distance"]
