"""The JAX backend: ``jax.numpy`` arrays, ``jax.grad``/``jax.jit``, flax.nnx networks, optax optimisers.

JAX is imported by :func:`make_backend`, never by importing this package. Float32 by default;
float64 needs ``jax.config.update("jax_enable_x64", True)`` first (asking for float64 without it is
a ``ValueError``, never a silent float32).
"""


def make_backend(device=None):
    from .backend import JaxBackend

    return JaxBackend(device)


def device_of(x):
    devices = getattr(x, "devices", None)
    try:
        found = devices() if callable(devices) else None
    except Exception:  # noqa: BLE001 - a tracer inside jit has no device: the default backend
        return None
    if not found or len(found) != 1:
        return None
    device = next(iter(found))
    return f"{device.platform}:{device.id}"
