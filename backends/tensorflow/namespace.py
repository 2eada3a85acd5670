"""A small array-API-style namespace over TensorFlow (array-api-compat does not cover it).

Only the functions the core uses are provided, with array-API names and signatures; anything
else raises ``AttributeError`` naming what is missing, rather than guessing.
"""


class TensorflowNamespace:
    """``xp`` for TensorFlow tensors."""

    def __init__(self, tf):
        self._tf = tf
        self.float32, self.float64, self.int64, self.bool = tf.float32, tf.float64, tf.int64, tf.bool

    def __getattr__(self, name):
        raise AttributeError(f"the TensorFlow array namespace has no {name!r}; add it to backends/tensorflow/namespace.py")

    def asarray(self, x, dtype=None):
        return self._tf.convert_to_tensor(x, dtype=dtype)

    def astype(self, x, dtype):
        return self._tf.cast(x, dtype)

    def reshape(self, x, shape):
        # Under tf.function a leading dim (the batch) may be unknown; the core only reshapes
        # trailing axes, so an unknown dim i of the target is dim i of the input.
        if any(d is None for d in shape):
            dynamic = self._tf.shape(x)
            shape = [dynamic[i] if d is None else d for i, d in enumerate(shape)]
        return self._tf.reshape(x, shape)

    def permute_dims(self, x, axes):
        return self._tf.transpose(x, axes)

    def concat(self, arrays, axis=0):
        return self._tf.concat(list(arrays), axis=axis)

    def stack(self, arrays, axis=0):
        return self._tf.stack(list(arrays), axis=axis)

    def expand_dims(self, x, axis=0):
        return self._tf.expand_dims(x, axis)

    def take(self, x, indices, axis=None):
        return self._tf.gather(x, indices, axis=axis)

    def matmul(self, a, b):
        return self._tf.linalg.matmul(a, b)

    def sort(self, x, axis=-1, descending=False):
        return self._tf.sort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING")

    def argsort(self, x, axis=-1, descending=False, stable=True):
        return self._tf.argsort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING", stable=stable)

    def where(self, cond, a, b):
        a = self._tf.convert_to_tensor(a)
        b = self._tf.cast(b, a.dtype) if not hasattr(b, "dtype") else b
        return self._tf.where(cond, a, b)

    def max(self, x, axis=None, keepdims=False):
        return self._tf.reduce_max(x, axis=axis, keepdims=keepdims)

    def min(self, x, axis=None, keepdims=False):
        return self._tf.reduce_min(x, axis=axis, keepdims=keepdims)

    def sum(self, x, axis=None, keepdims=False):
        return self._tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return self._tf.reduce_mean(x, axis=axis, keepdims=keepdims)

    def maximum(self, a, b):
        return self._tf.maximum(a, b)

    def minimum(self, a, b):
        return self._tf.minimum(a, b)

    def abs(self, x):
        return self._tf.abs(x)

    def sqrt(self, x):
        return self._tf.sqrt(x)

    def exp(self, x):
        return self._tf.exp(x)

    def log(self, x):
        return self._tf.math.log(x)

    def zeros(self, shape, dtype=None):
        return self._tf.zeros(shape, dtype=dtype or self._tf.float64)

    def ones(self, shape, dtype=None):
        return self._tf.ones(shape, dtype=dtype or self._tf.float64)
