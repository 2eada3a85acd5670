"""Turning user input into backend arrays with clear errors (shared by the ops)."""


def as_backend_array(backend, x, name, dtype=None):
    """``x`` as a native array of ``backend``.

    NumPy arrays and lists are converted (to ``dtype`` when given, else kept as they are); native
    arrays must already have ``dtype``: nothing is cast behind the user's back.
    """
    if backend.is_native(x):
        if dtype is not None and backend.dtype_name(x) != dtype:
            raise TypeError(f"{name} has dtype {backend.dtype_name(x)} but {dtype} was expected; cast it first")
        return x
    try:
        return backend.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}: {err}") from err


def check_cells_axis(x, n_cells, name, what):
    if len(x.shape) < 1 or int(x.shape[-1]) != n_cells:
        raise ValueError(
            f"{name} must have {n_cells} cells on its last axis ({what}), got shape {tuple(x.shape)}"
        )
