"""Turning user input into backend arrays with clear errors (shared by the ops), and the one
conversion of any array or tensor to NumPy on the host."""

import numpy as np

from foscat_core.backends import backend_of

COMPLEX_HINT = "the library works on real maps: pass the real and imaginary parts as separate maps, or abs()"


def to_host(x):
    """``x`` as a NumPy array on the host: NumPy data as it is, lists and scalars through
    ``np.asarray``, a torch tensor (any device) or a TensorFlow / JAX array copied to the host,
    detached from any autograd graph. Duck typed: no framework is imported.

    >>> to_host([1, 2]).dtype.kind
    'i'
    """
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch: off the graph and the device first
        x = x.detach().cpu()
    if callable(getattr(x, "numpy", None)):  # torch (CPU), TensorFlow eager tensors
        x = x.numpy()
    return np.asarray(x)  # JAX arrays, xarray coordinates, lists, scalars


def as_backend_array(backend, x, name, dtype=None):
    """``x`` as a native array of ``backend``.

    Host data (NumPy arrays, lists, scalars) is converted to ``dtype`` on every backend alike.
    A framework tensor must belong to ``backend`` and already have ``dtype``: a tensor is never
    cast or moved between frameworks behind the user's back (that would cut its autograd graph).
    Complex data is a ``TypeError`` on every backend (a cast would drop the imaginary part).
    """
    owner = backend_of(x)
    if owner is not None:
        if owner.dtype_name(x).startswith("complex"):
            raise TypeError(f"{name} is complex ({owner.dtype_name(x)}); {COMPLEX_HINT}")
        if owner.name != backend.name:
            raise TypeError(
                f"{name} is a {owner.name} tensor but this operation runs on the {backend.name!r} "
                f"backend; pass a {backend.name} array or NumPy data, or build the object with "
                f"backend={owner.name!r}"
            )
        if dtype is not None and backend.dtype_name(x) != dtype:
            raise TypeError(f"{name} has dtype {backend.dtype_name(x)} but {dtype} was expected; cast it first")
        try:
            return backend.asarray(x)
        except ValueError as err:  # e.g. a tensor on another device
            raise ValueError(f"{name}: {err}") from err
    if _is_complex(x):
        raise TypeError(f"{name} is complex ({np.asarray(x).dtype}); {COMPLEX_HINT}")
    try:
        return backend.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}: {err}") from err


def _is_complex(x):
    try:
        return np.iscomplexobj(x)
    except (TypeError, ValueError):  # not array-like: the conversion that follows says so
        return False


def check_cells_axis(x, n_cells, name, what):
    if len(x.shape) < 1 or int(x.shape[-1]) != n_cells:
        raise ValueError(
            f"{name} must have {n_cells} cells on its last axis ({what}), got shape {tuple(x.shape)}"
        )
