"""What a network needs from its framework beyond arrays: a module base class, variables,
a few activations, optimisers (Adam, AdamW, SGD: torch's own, and their step-for-step twins on
TensorFlow) and a compiled training step.

One small adapter per backend, chosen by ``backend.name``; the layers and networks never test
which framework they run on.
"""

import itertools
import math

import numpy as np

from foscat_core.backends.torch_contract import is_compiling

from .optimizers import TF_OPTIMIZERS, TorchOptimizer, check_loss_value


class _PlainModule:
    """Module base for frameworks without one (NumPy: inference only) and the TF base's helpers."""

    def __init__(self):
        self.training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def train(self, mode=True):
        """Set training mode (``True``) or evaluation mode on this module and every sub-module."""
        for module in _walk_modules(self):
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self):
        """The trainable variables in registration order (as torch's ``parameters()``)."""
        return [v for _, v in self._fc_named_variables(trainable_only=True)]


def _walk_modules(module):
    yield module
    for _, child in module._fc_children():
        yield from _walk_modules(child)


class _Picklable:
    def __reduce__(self):
        return (framework, (self.backend,))


class TorchFramework(_Picklable):
    def __init__(self, backend):
        import torch

        self.torch, self.backend = torch, backend

        class TorchModule(torch.nn.Module):
            def _apply(self, fn, *args, **kwargs):
                # .to(device) / .cuda() / .cpu(): follow the parameters to their new device.
                out = super()._apply(fn, *args, **kwargs)
                tensors = itertools.chain(self.parameters(), self.buffers())
                device = next((t.device for t in tensors), None)
                if device is not None and device != self.backend.device:
                    from foscat_core.backends import get_backend

                    self._fc_rebind(get_backend("torch", device))
                return out

        self.module_base = TorchModule

    def parameter(self, value, dtype):
        return self.torch.nn.Parameter(self.backend.asarray(np.asarray(value), dtype=dtype))

    def add_state(self, module, name, value, dtype):
        module.register_buffer(name, self.backend.asarray(np.asarray(value), dtype=dtype))

    def module_list(self, modules):
        return self.torch.nn.ModuleList(modules)

    def assign(self, variable, value):
        with self.torch.no_grad():
            variable.copy_(self.torch.as_tensor(np.asarray(value), dtype=variable.dtype))

    def relu(self, x):
        return self.torch.relu(x)

    def sigmoid(self, x):
        return self.torch.sigmoid(x)

    def softmax(self, x, axis):
        return self.torch.softmax(x, dim=axis)

    def gelu(self, x):
        return self.torch.nn.functional.gelu(x)

    def assert_finite(self, x, message):
        """``x``, or a ``ValueError(message)`` if any value is NaN or infinite (a "meta" tensor
        holds no values to check).

        While ``torch.compile`` or ``torch.export`` traces, the check is a graph assertion
        (``torch._assert_async``) instead: no host sync and no data-dependent branch, so no
        graph break; a non-finite input then fails at run time with a ``RuntimeError`` carrying
        the same message."""
        torch = self.torch
        if x.device.type == "meta":
            return x
        finite = torch.isfinite(x).all()
        if is_compiling(torch):
            torch._assert_async(finite, message)
        elif not bool(finite):
            raise ValueError(message)
        return x

    def no_grad(self):
        return self.torch.no_grad()

    def fused_batch_norm(self, norm, x):
        """torch's batch norm kernel (running statistics updated in place, unbiased variance).

        While a graph is traced the input is made contiguous first: torch's CPU kernel returns a
        contiguous result for a strided (B, C, N) input (a convolution's output, a transposed
        (B, N, C)) where its shape function promises the input's strides, and graphs run
        without Inductor (``backend="aot_eager"``) then fail on the next view."""
        if is_compiling(self.torch):
            x = x.contiguous()
        return self.torch.nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.scale, norm.shift,
                                                   norm.training, norm.momentum, norm.eps)

    def optimizer(self, model, kind, lr, weight_decay, momentum):
        """A ``torch.optim`` optimiser ("adam", "adamw" or "sgd") over ``model``'s parameters."""
        return TorchOptimizer(self.torch, model.parameters(), kind, lr, weight_decay, momentum)

    def trainer(self, model, objective, optimizer):
        """A function ``(x, y, w) -> loss float`` running one step of ``optimizer`` on
        ``objective(model(x), y, w)``."""
        native = optimizer.native

        def step(x, y, w):
            native.zero_grad(set_to_none=True)
            loss = objective(model(x), y, w)
            check_loss_value(loss, self.torch.is_tensor)
            loss.backward()
            native.step()
            return float(loss.detach())

        return step

    def evaluator(self, model):
        def run(x):
            with self.torch.no_grad():
                return model(x)

        return run


class TensorflowFramework(_Picklable):
    def __init__(self, backend):
        import tensorflow as tf

        self.tf, self.backend = tf, backend

        class TfModule(tf.Module, _PlainModule):
            def __init__(self):
                tf.Module.__init__(self)
                self.training = True

        self.module_base = TfModule

    def _variable(self, value, dtype, trainable):
        tf = self.tf
        with tf.init_scope(), tf.device(self.backend.device):
            return tf.Variable(np.asarray(value), dtype=self.backend.dtype(dtype), trainable=trainable)

    def parameter(self, value, dtype):
        return self._variable(value, dtype, True)

    def add_state(self, module, name, value, dtype):
        setattr(module, name, self._variable(value, dtype, False))

    def module_list(self, modules):
        return list(modules)

    def assign(self, variable, value):
        variable.assign(np.asarray(value, dtype=variable.dtype.as_numpy_dtype))

    def relu(self, x):
        return self.tf.nn.relu(x)

    def sigmoid(self, x):
        return self.tf.sigmoid(x)

    def softmax(self, x, axis):
        return self.tf.nn.softmax(x, axis=axis)

    def gelu(self, x):
        # The erf form: tf.nn.gelu is only accurate to ~5e-9 in float64.
        return 0.5 * x * (1.0 + self.tf.math.erf(x / math.sqrt(2.0)))

    def assert_finite(self, x, message):
        """``x``, or a ``ValueError(message)`` if any value is NaN or infinite; inside a
        ``tf.function`` a graph check that fails at run time (``InvalidArgumentError``)."""
        tf = self.tf
        if tf.executing_eagerly():
            if not bool(tf.reduce_all(tf.math.is_finite(x))):
                raise ValueError(message)
            return x
        return tf.debugging.assert_all_finite(x, message)

    def no_grad(self):
        import contextlib

        return contextlib.nullcontext()

    def fused_batch_norm(self, norm, x):
        return None  # tf.nn.fused_batch_norm wants NHWC images; the written-once version is used

    def optimizer(self, model, kind, lr, weight_decay, momentum):
        """The TensorFlow twin of torch's optimiser ``kind`` ("adam", "adamw" or "sgd")."""
        return TF_OPTIMIZERS[kind](self.tf, model.parameters(), lr, weight_decay, momentum)

    def trainer(self, model, objective, optimizer):
        tf = self.tf
        variables = model.parameters()

        @tf.function(reduce_retracing=True)
        def step(x, y, w):
            with tf.GradientTape() as tape:
                loss = objective(model(x), y, w)
                check_loss_value(loss, tf.is_tensor)  # runs while tracing: static shape
            optimizer.apply(tape.gradient(loss, variables))
            return loss

        return lambda x, y, w: float(step(x, y, w))

    def evaluator(self, model):
        # Traced per training flag: the flag is a Python value read while tracing.
        return self.tf.function(lambda x: model(x), reduce_retracing=True)


class NumpyFramework(_Picklable):
    """Inference only: parameters are NumPy arrays, there is no autograd to train with."""

    module_base = _PlainModule

    def __init__(self, backend):
        self.backend = backend

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
        """``x``, or a ``ValueError(message)`` if any value is NaN or infinite."""
        if not np.all(np.isfinite(x)):
            raise ValueError(message)
        return x

    def no_grad(self):
        import contextlib

        return contextlib.nullcontext()

    def fused_batch_norm(self, norm, x):
        return None

    def optimizer(self, model, kind, lr, weight_decay, momentum):
        raise NotImplementedError(
            "the numpy backend has no autograd, so it cannot train; build the network with "
            "backend='torch' or backend='tensorflow' (a trained file loads on numpy for predict)"
        )

    def evaluator(self, model):
        return model


_FRAMEWORKS = {"torch": TorchFramework, "tensorflow": TensorflowFramework, "numpy": NumpyFramework}
_cache = {}


def framework(backend):
    """The (cached) framework adapter of a backend object."""
    key = id(backend)
    if key not in _cache:
        _cache[key] = _FRAMEWORKS[backend.name](backend)
    return _cache[key]
