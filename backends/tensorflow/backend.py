"""TensorFlow backend: a namespace shim over raw TF ops, ``tf.GradientTape`` autograd, GPU when present.

All ops are plain TensorFlow ops (no Keras), so they run eagerly and under ``tf.function``.
"""

import numpy as np

from ..base import Backend, NoGradientError
from .namespace import TensorflowNamespace
from .sparse import TfStencilOperator, plain_matmul, stencil_contract


def _tf():
    try:
        import tensorflow as tf
    except ImportError as err:  # pragma: no cover - exercised only without TensorFlow
        raise ImportError(
            "the 'tensorflow' backend needs TensorFlow: pip install 'foscat_core[tensorflow]' "
            "(or pip install tensorflow-cpu)"
        ) from err
    return tf


def check_device(tf, device):
    """``device`` checked against ``tf.config.list_logical_devices()``; returned as ``"/TYPE:index"``
    (as given when it names a job or task). TensorFlow would otherwise place ops on the CPU
    silently when a GPU is missing, or fail later with an unrelated message."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a TensorFlow device name such as '/CPU:0' or '/GPU:0', "
                        f"got {type(device).__name__}")
    if device.strip().lower().split(":")[0] in ("cuda", "mps", "xpu"):
        raise ValueError(f"device {device!r} is a torch device name; TensorFlow names GPUs '/GPU:0', '/GPU:1'...")
    names = [d.name for d in tf.config.list_logical_devices()]
    try:
        spec = tf.DeviceSpec.from_string(device)
    except ValueError:
        spec = None
    if spec is None or spec.device_type is None:
        raise ValueError(f"device must be a TensorFlow device name such as '/CPU:0' or '/GPU:0' "
                         f"(this machine has {names}), got {device!r}")
    kind, index = spec.device_type.upper(), spec.device_index or 0
    if f"/device:{kind}:{index}" not in names:
        raise ValueError(f"device {device!r} does not exist on this machine; "
                         f"tf.config.list_logical_devices() gives {names}")
    return device if (spec.job, spec.replica, spec.task) != (None, None, None) else f"/{kind}:{index}"


class TensorflowBackend(Backend):
    """TensorFlow tensors; ``device`` such as ``"/CPU:0"`` or ``"/GPU:0"`` (default: the first GPU, else
    the CPU); a device TensorFlow does not list is a ``ValueError`` (see :func:`check_device`)."""

    name = "tensorflow"
    has_autograd = True

    def __init__(self, device=None):
        tf = _tf()
        self.tf = tf
        self.xp = TensorflowNamespace(tf)
        if device is None:
            device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
        else:
            device = check_device(tf, device)
        self.device = device

    def __repr__(self):
        return f"<foscat_core backend 'tensorflow' on {self.device}>"

    def dtype(self, name):
        return getattr(self.tf, name)

    def dtype_name(self, x):
        return x.dtype.name

    def is_native(self, x):
        return isinstance(x, (self.tf.Tensor, self.tf.Variable))

    def asarray(self, x, dtype=None):
        tf = self.tf
        dt = None if dtype is None else self.dtype(dtype)
        if self.is_native(x):
            return x if dt is None or x.dtype == dt else tf.cast(x, dt)
        # Host data becomes an eager constant even while a tf.function is being traced: objects
        # that cache such arrays (operators, kernels) then never hold a tensor of a dead graph.
        with tf.init_scope(), tf.device(self.device):
            return tf.convert_to_tensor(np.asarray(x), dtype=dt)

    def to_numpy(self, x):
        return np.array(x.numpy() if self.is_native(x) else x, copy=True)

    def is_traced(self, x):
        return not self.tf.executing_eagerly()

    def assert_finite(self, x, message):
        """``x``, or a ``ValueError(message)`` if any value is NaN or infinite; inside a
        ``tf.function`` a graph check that fails at run time (``InvalidArgumentError``)."""
        tf = self.tf
        if tf.executing_eagerly():
            if not bool(tf.reduce_all(tf.math.is_finite(x))):
                raise ValueError(message)
            return x
        return tf.debugging.assert_all_finite(x, message)

    def take(self, x, idx, axis):
        return self.tf.gather(x, idx, axis=axis)

    def sparse_operator(self, forms, dtype):
        # Built eagerly even when first asked for inside a tf.function trace: an operator cached
        # on the stencil must not belong to one graph.
        with self.tf.init_scope(), self.tf.device(self.device):
            return TfStencilOperator(self.tf, forms, self.dtype(dtype), self.device)

    def stencil_contract(self, xt, wr, op):
        # COO sparse-dense products per batch element, gradient in the dense operand: see sparse.py.
        with self.tf.device(self.device):
            return stencil_contract(self.tf, xt, wr, op)

    def sparse_matmul(self, op, x):
        with self.tf.device(self.device):
            return plain_matmul(self.tf, op, x)

    def pow(self, x, p):
        return self.tf.pow(x, p)

    def stop_gradient(self, x):
        return self.tf.stop_gradient(x)

    def size_along(self, x, axes):
        if any(x.shape[a] is None for a in axes):  # unknown while a tf.function is traced
            shape = self.tf.shape(x)
            size = shape[axes[0]]
            for axis in axes[1:]:
                size = size * shape[axis]
            return self.tf.cast(size, x.dtype)
        return super().size_along(x, axes)

    def _tape_value_and_grad(self, fn, x):
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(x)
            value, aux = fn(x)
        grad = tape.gradient(value, x)
        if grad is None:
            raise NoGradientError("the value does not depend on x through TensorFlow operations")
        return value, aux, tf.convert_to_tensor(grad)  # dense even after a gather on x

    def value_and_grad(self, fn, x):
        value, _, grad = self._tape_value_and_grad(lambda t: (fn(t), []), self.tf.convert_to_tensor(x))
        return value, grad

    def compile_value_and_grad(self, fn):
        # One graph: eagerly, each of the hundreds of small ops of a scattering loss pays
        # TensorFlow's per-op dispatch; traced once, an evaluation costs about what torch's does.
        return self.tf.function(lambda x: self._tape_value_and_grad(fn, x), reduce_retracing=True,
                                autograph=False)
