"""Backend registry: pick the framework arrays live in.

>>> import foscat_core
>>> foscat_core.set_backend("numpy").name
'numpy'

``set_backend(name)`` sets the default for objects made afterwards; every constructor also takes
``backend=`` (a name or a backend object), and an object keeps the backend it was made with.
Frameworks are imported on first use only.
"""

import sys
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
    """The canonical backend name for ``name`` or one of its aliases (case-insensitive).

    Parameters
    ----------
    name : str
        ``"numpy"`` / ``"np"``, ``"torch"`` / ``"pytorch"`` or ``"tensorflow"`` / ``"tf"``.

    Returns
    -------
    str
        ``"numpy"``, ``"torch"`` or ``"tensorflow"``. Nothing is imported.

    Raises
    ------
    ValueError
        For any other name or a non-string.

    Examples
    --------
    >>> from foscat_core.backends import canonical_name
    >>> canonical_name("np"), canonical_name("PyTorch"), canonical_name("tf")
    ('numpy', 'torch', 'tensorflow')
    >>> canonical_name("jax")
    Traceback (most recent call last):
        ...
    ValueError: backend must be one of 'numpy', 'torch', 'tensorflow', got 'jax'
    """
    if not isinstance(name, str) or name.lower() not in _ALIASES:
        raise ValueError(f"backend must be one of 'numpy', 'torch', 'tensorflow', got {name!r}")
    return _ALIASES[name.lower()]


def get_backend(name=None, device=None):
    """The backend object for ``name`` (default: the one chosen by :func:`set_backend`).

    Parameters
    ----------
    name : {"numpy", "torch", "tensorflow"}, optional
    device : str, optional
        Framework device such as ``"cpu"``, ``"cuda:1"`` (torch) or ``"/GPU:0"`` (TensorFlow);
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
    name : {"numpy", "torch", "tensorflow"}
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
        The torch backend on ``x``'s device for a torch tensor, the TensorFlow backend for a
        TensorFlow tensor or variable, else ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.backends import backend_of
    >>> backend_of(np.zeros((1, 2, 12))) is None, backend_of([1.0, 2.0]) is None
    (True, True)
    """
    torch = sys.modules.get("torch")  # loaded if x can be a torch tensor; never imported here
    if torch is not None and isinstance(x, torch.Tensor):
        return get_backend("torch", str(x.device))  # (no string test: torch.compile traces this)
    module = type(x).__module__
    if module.startswith("torch"):
        return get_backend("torch", str(x.device))
    if module.startswith("tensorflow") or module.startswith("tf_keras"):
        return get_backend("tensorflow")
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
        raise TypeError(f"backend must be a name ('numpy', 'torch', 'tensorflow') or a backend object, got {backend!r}")
    owner = backend_of(like) if like is not None else None
    return owner if owner is not None else get_backend()


__all__ = ["Backend", "get_backend", "set_backend", "resolve_backend", "backend_of", "canonical_name"]
