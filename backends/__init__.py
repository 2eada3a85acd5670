"""Backend registry: pick the framework arrays live in.

>>> import foscat_core
>>> foscat_core.set_backend("numpy").name
'numpy'

``set_backend(name)`` sets the default for objects made afterwards; every constructor also takes
``backend=`` (a name or a backend object), and an object keeps the backend it was made with.
Frameworks are imported on first use only.
"""

import importlib
import sys
import threading

from .base import Backend, NoGradientError, TracedHostCopyError
from .registry import ALIASES, BACKENDS, BY_NAME, NAMES

_instances = {}
_lock = threading.Lock()
_default = {"name": "numpy", "device": None}
_NAMES_TEXT = ", ".join(repr(n) for n in NAMES)


_adapters = {}


def adapter(name):
    """The adapter sub-package of backend ``name`` (imported; its framework is not)."""
    module = _adapters.get(name)  # a dict read: torch.compile traces backend_of on every forward
    if module is None:
        module = _adapters[name] = importlib.import_module(f"{__name__}.{BY_NAME[name].package}")
    return module


def _make(name, device):
    try:
        return adapter(name).make_backend(device)
    except ImportError as err:
        entry = BY_NAME[name]
        raise ImportError(f"backend {name!r} is not available ({err}); install it with {entry.install}") from err


def canonical_name(name):
    """The canonical backend name for ``name`` or one of its aliases (case-insensitive).

    Parameters
    ----------
    name : str
        ``"numpy"`` / ``"np"``, ``"torch"`` / ``"pytorch"``, ``"tensorflow"`` / ``"tf"`` or ``"jax"``
        (the rows of :mod:`foscat_core.backends.registry`).

    Returns
    -------
    str
        The canonical name. Nothing is imported.

    Raises
    ------
    ValueError
        For any other name or a non-string.

    Examples
    --------
    >>> from foscat_core.backends import canonical_name
    >>> canonical_name("np"), canonical_name("PyTorch"), canonical_name("tf")
    ('numpy', 'torch', 'tensorflow')
    >>> canonical_name("mxnet")
    Traceback (most recent call last):
        ...
    ValueError: backend must be one of 'numpy', 'torch', 'tensorflow', 'jax', got 'mxnet'
    """
    if not isinstance(name, str) or name.lower() not in ALIASES:
        raise ValueError(f"backend must be one of {_NAMES_TEXT}, got {name!r}")
    return ALIASES[name.lower()]


def get_backend(name=None, device=None):
    """The backend object for ``name`` (default: the one chosen by :func:`set_backend`).

    Parameters
    ----------
    name : {"numpy", "torch", "tensorflow", "jax"}, optional
    device : str, optional
        Framework device such as ``"cpu"``, ``"cuda:1"`` (torch and JAX) or ``"/GPU:0"`` (TensorFlow);
        default: the GPU when the framework sees one, else the CPU. It must exist on this
        machine: nothing falls back to the CPU silently.

    Returns
    -------
    Backend
        One shared instance per ``(name, device)``: asking twice returns the same object. The
        framework is imported on the first request only.

    Raises
    ------
    ValueError
        For an unknown ``name``, a malformed device name, or a device the framework does not
        see (the message lists those it does, e.g. ``['cpu']``).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.backends import get_backend
    >>> bk = get_backend("numpy")
    >>> bk
    <foscat_core backend 'numpy'>
    >>> bk is get_backend("np"), bk.has_autograd
    (True, False)
    >>> x = bk.asarray([1, 2, 3], dtype="float32")
    >>> bk.dtype_name(x), bk.to_numpy(x).shape
    ('float32', (3,))
    """
    if name is None:
        name, device = _default["name"], device if device is not None else _default["device"]
    name = canonical_name(name)
    key = (name, None if device is None else str(device))
    backend = _instances.get(key)
    if backend is not None:
        # Lock-free once made (a dict read is atomic): every forward pass asks for its tensors'
        # backend, and torch.compile cannot trace a lock (it would break the graph there).
        return backend
    with _lock:
        if key not in _instances:
            backend = _make(name, device)
            # "cpu" and the default that resolved to the CPU are one backend, not two.
            resolved = (name, str(backend.device))
            _instances[key] = _instances.setdefault(resolved, backend)
        return _instances[key]


def set_backend(name, device=None):
    """Make ``name`` the default backend for objects created afterwards; returns it.

    Objects made before the call keep their backend; constructors given ``backend=`` ignore the
    default.

    Parameters
    ----------
    name : {"numpy", "torch", "tensorflow", "jax"}
        Or an alias accepted by :func:`canonical_name` (``"np"``, ``"pytorch"``, ``"tf"``).
    device : str, optional
        Framework device, as in :func:`get_backend`.

    Returns
    -------
    Backend
        The new default, ``get_backend(name, device)``.

    Examples
    --------
    >>> from foscat_core.backends import get_backend, set_backend
    >>> set_backend("numpy")
    <foscat_core backend 'numpy'>
    >>> get_backend().name
    'numpy'
    """
    backend = get_backend(name, device)
    _default["name"], _default["device"] = backend.name, device
    return backend


def backend_of(x):
    """The backend owning a native tensor ``x``, or ``None`` for NumPy arrays and Python data.

    Only the type's module is inspected, so no framework is imported.

    Parameters
    ----------
    x : object
        Any array or value, e.g. a ``torch.Tensor`` of shape (B, C, N_cells).

    Returns
    -------
    Backend or None
        The backend of ``x``'s framework on ``x``'s device (torch tensor, TensorFlow tensor or
        variable, JAX array or tracer), else ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.backends import backend_of
    >>> backend_of(np.zeros((1, 2, 12))) is None, backend_of([1.0, 2.0]) is None
    (True, True)
    """
    for entry in BACKENDS:
        if entry.array_type is not None:
            # An isinstance test when the framework is loaded (torch.compile traces this; a
            # framework that is not loaded holds no arrays), then the type's module name.
            module = sys.modules.get(entry.array_type[0])
            if module is not None and isinstance(x, getattr(module, entry.array_type[1])):
                return get_backend(entry.name, adapter(entry.name).device_of(x))
    module = type(x).__module__
    for entry in BACKENDS:
        if any(module.startswith(prefix) for prefix in entry.array_modules):
            return get_backend(entry.name, adapter(entry.name).device_of(x))
    return None


def resolve_backend(backend=None, like=None):
    """A backend object from ``backend=`` (object, name or None), else from ``like``'s type, else the default.

    Parameters
    ----------
    backend : Backend or str, optional
        A backend object (returned as is) or a name for :func:`get_backend`.
    like : object, optional
        Used when ``backend`` is ``None``: the backend owning this tensor (see
        :func:`backend_of`); NumPy arrays and ``None`` give the default backend.

    Returns
    -------
    Backend

    Raises
    ------
    TypeError
        When ``backend`` is neither ``None``, a name nor a backend object.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.backends import get_backend, resolve_backend
    >>> bk = get_backend("numpy")
    >>> resolve_backend("numpy") is bk, resolve_backend(bk) is bk
    (True, True)
    >>> resolve_backend(like=np.zeros(12)).name  # a NumPy array: the default backend
    'numpy'
    """
    if isinstance(backend, Backend):
        return backend
    if isinstance(backend, str):
        return get_backend(backend)
    if backend is not None:
        raise TypeError(f"backend must be a name ({_NAMES_TEXT}) or a backend object, got {backend!r}")
    owner = backend_of(like) if like is not None else None
    return owner if owner is not None else get_backend()


__all__ = ["Backend", "NoGradientError", "TracedHostCopyError", "NAMES", "get_backend", "set_backend",
           "resolve_backend", "backend_of", "canonical_name"]
