"""Backend registry: pick the framework arrays live in.

>>> import foscat_core
>>> foscat_core.set_backend("numpy").name
'numpy'

``set_backend(name)`` sets the default for objects made afterwards; every constructor also takes
``backend=`` (a name or a backend object), and an object keeps the backend it was made with.
Frameworks are imported on first use only.
"""

import threading

from .base import Backend

_ALIASES = {"numpy": "numpy", "np": "numpy", "torch": "torch", "pytorch": "torch",
            "tensorflow": "tensorflow", "tf": "tensorflow"}
_INSTALL_HINT = {"torch": "pip install 'foscat_core[torch]'", "tensorflow": "pip install 'foscat_core[tensorflow]'"}
_instances = {}
_lock = threading.Lock()
_default = {"name": "numpy", "device": None}


def _make(name, device):
    if name == "numpy":
        from .numpy_backend import NumpyBackend

        return NumpyBackend(device)
    try:
        if name == "torch":
            from .torch_backend import TorchBackend

            return TorchBackend(device)
        from .tensorflow_backend import TensorflowBackend

        return TensorflowBackend(device)
    except ImportError as err:
        raise ImportError(f"backend {name!r} is not available ({err}); install it with {_INSTALL_HINT[name]}") from err


def canonical_name(name):
    if not isinstance(name, str) or name.lower() not in _ALIASES:
        raise ValueError(f"backend must be one of 'numpy', 'torch', 'tensorflow', got {name!r}")
    return _ALIASES[name.lower()]


def get_backend(name=None, device=None):
    """The backend object for ``name`` (default: the one chosen by :func:`set_backend`).

    Parameters
    ----------
    name : {"numpy", "torch", "tensorflow"}, optional
    device : str, optional
        Framework device such as ``"cpu"``, ``"cuda:1"`` or ``"/GPU:0"``; default: the GPU
        when the framework sees one, else the CPU.
    """
    if name is None:
        name, device = _default["name"], device if device is not None else _default["device"]
    name = canonical_name(name)
    key = (name, None if device is None else str(device))
    with _lock:
        if key not in _instances:
            backend = _make(name, device)
            # "cpu" and the default that resolved to the CPU are one backend, not two.
            resolved = (name, str(backend.device))
            _instances[key] = _instances.setdefault(resolved, backend)
        return _instances[key]


def set_backend(name, device=None):
    """Make ``name`` the default backend for objects created afterwards; returns it."""
    backend = get_backend(name, device)
    _default["name"], _default["device"] = backend.name, device
    return backend


def backend_of(x):
    """The backend owning a native tensor ``x``, or ``None`` for NumPy arrays and Python data."""
    module = type(x).__module__
    if module.startswith("torch"):
        return get_backend("torch", str(x.device))
    if module.startswith("tensorflow") or module.startswith("tf_keras"):
        return get_backend("tensorflow")
    return None


def resolve_backend(backend=None, like=None):
    """A backend object from ``backend=`` (object, name or None), else from ``like``'s type, else the default."""
    if isinstance(backend, Backend):
        return backend
    if isinstance(backend, str):
        return get_backend(backend)
    if backend is not None:
        raise TypeError(f"backend must be a name ('numpy', 'torch', 'tensorflow') or a backend object, got {backend!r}")
    owner = backend_of(like) if like is not None else None
    return owner if owner is not None else get_backend()


__all__ = ["Backend", "get_backend", "set_backend", "resolve_backend", "backend_of", "canonical_name"]
