"""The PyTorch backend: arrays, stencil products, module base, optimisers and trainer.

torch is imported by :func:`make_backend`, never by importing this package.
"""


def make_backend(device=None):
    from .backend import TorchBackend

    return TorchBackend(device)


def device_of(x):
    return str(x.device)
