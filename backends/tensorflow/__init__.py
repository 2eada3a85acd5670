"""The TensorFlow backend: arrays, stencil products, module base, optimisers and trainer.

TensorFlow is imported by :func:`make_backend`, never by importing this package.
"""


def make_backend(device=None):
    from .backend import TensorflowBackend

    return TensorflowBackend(device)


def device_of(x):
    return None  # the default TensorFlow backend (ops are placed by its device scope)
