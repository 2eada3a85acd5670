"""Reference-style ``bk_*`` helpers over a backend, and small array helpers the scattering code shares.

FOSCAT user code calls ``scat_op.backend.bk_mean(...)`` and friends; :class:`BackendCompat` wraps a
:class:`foscat_core.backends.Backend` so those calls work, while every attribute of the wrapped
backend (``name``, ``xp``, ``asarray``, ``to_numpy``, ``value_and_grad``, ...) stays reachable. It is
itself a ``Backend``, so it can be passed as ``backend=`` to any constructor.
"""

import numpy as np

from foscat_core.backends import Backend

_FORWARDED = ("dtype", "dtype_name", "is_native", "asarray", "to_numpy", "index_array", "take",
              "sparse_operator", "stencil_contract", "value_and_grad", "check_float_dtype")


class BackendCompat(Backend):
    """A backend with the reference library's ``bk_*`` helpers.

    Parameters
    ----------
    backend : Backend
        The backend to wrap (see :func:`foscat_core.get_backend`).
    dtype : {"float32", "float64"}
        The floating type ``bk_cast`` casts to.

    Attributes
    ----------
    raw : Backend
        The wrapped backend; every other attribute (``xp``, ``device``...) is forwarded to it.
    all_type : str
        ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.backends import get_backend
    >>> from foscat_core.scattering import BackendCompat
    >>> bk = BackendCompat(get_backend("numpy"), "float32")
    >>> bk
    BackendCompat(<foscat_core backend 'numpy'>, dtype='float32')
    >>> bk.name, bk.raw is get_backend("numpy")
    ('numpy', True)
    >>> x = np.arange(6.0).reshape(2, 3)  # e.g. (B, N)
    >>> bk.to_numpy(bk.bk_mean(x, axis=1))
    array([1., 4.])
    >>> bk.bk_cast(x).dtype
    dtype('float32')
    """

    def __reduce__(self):
        return (BackendCompat, (self.raw, self.all_type))

    def __init__(self, backend, dtype="float64"):
        if isinstance(backend, BackendCompat):
            backend = backend.raw
        self.raw = backend
        self.all_type = dtype
        self.name = backend.name
        self.has_autograd = backend.has_autograd
        self.host = backend.host
        self.xp = backend.xp
        for method in _FORWARDED:
            setattr(self, method, getattr(backend, method))

    def __getattr__(self, name):
        # Only reached for attributes not set in __init__ (e.g. ``device``, ``torch``, ``tf``).
        if name == "raw":
            raise AttributeError(name)
        return getattr(self.raw, name)

    def __repr__(self):
        return f"BackendCompat({self.raw!r}, dtype={self.all_type!r})"

    def _native(self, x):
        return x if self.raw.is_native(x) else self.raw.asarray(np.asarray(x))

    def bk_mean(self, x, axis=None, keepdims=False):
        """Mean of ``x`` over ``axis`` (all axes when ``None``)."""
        return self.xp.mean(self._native(x), axis=axis, keepdims=keepdims)

    def bk_sum(self, x, axis=None, keepdims=False):
        """Sum of ``x`` over ``axis`` (all axes when ``None``)."""
        return self.xp.sum(self._native(x), axis=axis, keepdims=keepdims)

    def bk_abs(self, x):
        return self.xp.abs(self._native(x))

    def bk_square(self, x):
        x = self._native(x)
        return x * x

    def bk_sqrt(self, x):
        return self.xp.sqrt(self._native(x))

    def bk_reshape(self, x, shape):
        return self.xp.reshape(self._native(x), tuple(shape))

    def bk_cast(self, x, dtype=None):
        """``x`` as a native array of ``dtype`` (default: the operator's ``all_type``)."""
        return self.raw.asarray(x, dtype=dtype or self.all_type)


def raw_backend(backend):
    """The plain backend under a possible :class:`BackendCompat` wrapper."""
    return backend.raw if isinstance(backend, BackendCompat) else backend


def square(bk, x):
    """Elementwise power 2 of a native array."""
    return x * x


def power(bk, x, p):
    """Elementwise ``x ** p`` of a native array (``p`` a Python number)."""
    if p == 2:
        return x * x
    if p == 1:
        return x
    return raw_backend(bk).pow(x, p)


def safe_modulus(xp, re, im):
    """``sqrt(re**2 + im**2)`` whose gradient is 0 (not NaN) where both parts vanish."""
    r2 = re * re + im * im
    positive = r2 > 0
    return xp.where(positive, xp.sqrt(xp.where(positive, r2, 1.0)), 0.0)


def safe_sqrt(xp, x):
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient at 0."""
    positive = x > 0
    return xp.where(positive, xp.sqrt(xp.where(positive, x, 1.0)), 0.0)
