"""What a network needs from TensorFlow beyond arrays: a ``tf.Module`` base, ``tf.Variable``s,
activations, the optimisers (twins of torch's) and the training step as a ``tf.function``."""

import contextlib
import math

import numpy as np

from ..base import check_loss_value
from ..plain_module import AdapterBase, PlainModule
from .keras_layer import check_no_mixed_policy
from .optimizers import TF_OPTIMIZERS


class Framework(AdapterBase):
    """What a network needs from TensorFlow beyond arrays (``backend.nn``)."""

    def __init__(self, backend):
        import tensorflow as tf

        super().__init__(backend)
        self.tf = tf

        class TfModule(tf.Module, PlainModule):
            def __init__(self):
                check_no_mixed_policy("building a network")
                tf.Module.__init__(self)
                self.training = True

        self.module_base = TfModule

    def _variable(self, value, dtype, trainable):
        tf = self.tf
        # States (batch-norm statistics) are written by every replica of a tf.distribute strategy
        # with the same values: the first replica's is kept (no effect without a strategy).
        aggregation = tf.VariableAggregation.NONE if trainable else tf.VariableAggregation.ONLY_FIRST_REPLICA
        with tf.init_scope(), tf.device(self.backend.device):
            return tf.Variable(np.asarray(value), dtype=self.backend.dtype(dtype), trainable=trainable,
                               aggregation=aggregation)

    def parameter(self, value, dtype):
        return self._variable(value, dtype, True)

    def add_state(self, module, name, value, dtype):
        setattr(module, name, self._variable(value, dtype, False))

    def module_list(self, modules):
        return list(modules)

    def assign(self, variable, value):
        """Set a variable from host data or a tensor."""
        if not isinstance(value, (self.tf.Tensor, self.tf.Variable)):
            value = np.asarray(value, dtype=variable.dtype.as_numpy_dtype)
        variable.assign(value)

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
        return self.backend.assert_finite(x, message)

    def no_grad(self):
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

    norm_sync = None  # while fit trains under a strategy: the replicas' sum for batch-norm statistics

    def distribution(self, model=None):
        """The distribution ``fit`` follows: a :class:`~.distributed.Mirrored` under a
        ``tf.distribute.MirroredStrategy`` (in scope, or holding ``model``'s variables),
        otherwise the single-process default (see
        :class:`~foscat_core.backends.base.SingleProcess`). Another strategy, or a network built
        outside the scope of the one in use, is a ``ValueError``."""
        from ..base import SINGLE_PROCESS
        from .distributed import distribution

        return distribution(self.tf, self, model) or SINGLE_PROCESS

    def keras_layer(self, model, name=None):
        """``model`` as a ``keras.layers.Layer`` whose weights are its ``tf.Variable``s (see keras_layer.py)."""
        from .keras_layer import keras_layer

        return keras_layer(model, name)

    def recomputes(self, modules):
        """True when :meth:`checkpoint` with these modules would recompute (one of them trains)."""
        return any(m.training for m in modules)

    def checkpoint(self, fn, *args):
        """``fn(*args)`` with its activations recomputed in the backward pass instead of kept
        (``tf.recompute_grad``; gradients reach the variables ``fn`` reads, eagerly and in a
        ``tf.function``) while a module among ``args`` trains; otherwise plainly ``fn(*args)``.

        The modules ``fn`` uses must be among ``args``: the recomputation puts their states back
        afterwards, so batch-norm running statistics are updated once per step, as without."""
        tf = self.tf
        modules = [a for a in args if isinstance(a, tf.Module)]
        if not self.recomputes(modules):
            return fn(*args)
        tensor_slots = [i for i, a in enumerate(args) if not isinstance(a, tf.Module)]
        states = [v for m in modules for _, v in m.named_variables() if not v.trainable]
        forward_done = []

        def run(*tensors):
            full = list(args)
            for i, t in zip(tensor_slots, tensors):
                full[i] = t
            if not forward_done:  # the forward pass (recompute_grad runs it without recording)
                forward_done.append(True)
                return fn(*full)
            kept = [tf.identity(v) for v in states]  # the recomputation in the backward pass
            out = fn(*full)
            for v, k in zip(states, kept):  # ordered after fn's own assignments (same resource)
                v.assign(k)
            return out

        return tf.recompute_grad(run)(*[args[i] for i in tensor_slots])
