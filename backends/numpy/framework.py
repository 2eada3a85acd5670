"""Networks on NumPy: plain objects, inference only (parameters are NumPy arrays)."""

import contextlib
import math

import numpy as np

from ..plain_module import AdapterBase, PlainModule


class Framework(AdapterBase):
    """Inference only: parameters are NumPy arrays, there is no autograd to train with."""

    module_base = PlainModule

    def parameter(self, value, dtype):
        return np.array(value, dtype=dtype)

    def add_state(self, module, name, value, dtype):
        setattr(module, name, np.array(value, dtype=dtype))

    def module_list(self, modules):
        return list(modules)

    def assign(self, variable, value):
        variable[...] = value

    def relu(self, x):
        return np.maximum(x, 0)

    def sigmoid(self, x):
        return 1.0 / (1.0 + np.exp(-x))

    def softmax(self, x, axis):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    def gelu(self, x):
        erf = np.vectorize(math.erf, otypes=[x.dtype])
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))

    def assert_finite(self, x, message):
        return self.backend.assert_finite(x, message)

    def no_grad(self):
        return contextlib.nullcontext()

    def fused_batch_norm(self, norm, x):
        return None

    def optimizer(self, model, kind, lr, weight_decay, momentum):
        raise NotImplementedError(
            "the numpy backend has no autograd, so it cannot train; build the network with "
            "a backend with autograd (torch, tensorflow or jax); a trained file loads on numpy for predict"
        )

    def evaluator(self, model):
        return model

    norm_sync = None  # batch-norm statistics are never synchronised across processes here

    def distribution(self, model=None):
        """Always the single-process default (see :class:`~foscat_core.backends.base.SingleProcess`)."""
        from ..base import SINGLE_PROCESS

        return SINGLE_PROCESS

    def keras_layer(self, model, name=None):
        raise TypeError(f"as_keras_layer needs a network built with backend='tensorflow'; this one is on "
                        f"backend={self.backend.name!r} (save it and load it with backend='tensorflow')")

    def recomputes(self, modules):
        """Never: inference only (see :meth:`checkpoint`)."""
        return False

    def checkpoint(self, fn, *args):
        """``fn(*args)``: inference only, there are no activations kept for a backward pass."""
        return fn(*args)
