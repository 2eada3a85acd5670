"""Floating dtype names, parsed once for every backend and the layers above."""

FLOAT_NAMES = ("float32", "float64")
# Low precision: networks, layers and stencils on the backends that compute in it (torch).
LOW_PRECISION_NAMES = ("bfloat16", "float16")
# What each backend builds networks and stencils in; absent: FLOAT_NAMES.
BACKEND_FLOAT_NAMES = {"torch": FLOAT_NAMES + LOW_PRECISION_NAMES}


def dtype_text(dtype):
    """``"float32"``, ``"int64"``... from a name, a NumPy dtype or a framework dtype object."""
    text = str(getattr(dtype, "name", dtype))
    for prefix in ("torch.", "tf.", "<dtype: '", "jnp."):
        text = text.replace(prefix, "")
    return text.replace("'>", "")


def check_dtype_name(dtype, name="dtype", allowed=FLOAT_NAMES):
    """``"float32"`` or ``"float64"`` (or another of ``allowed``) from a name or a NumPy/framework dtype;
    a ``ValueError`` naming the argument otherwise."""
    text = dtype_text(dtype)
    if text not in allowed:
        raise ValueError(f"{name} must be {' or '.join(repr(a) for a in allowed)}, got {dtype!r}")
    return text


def check_backend_dtype(dtype, backend, name="dtype"):
    """:func:`check_dtype_name` over the dtypes ``backend`` builds layers in: low precision on
    torch only, elsewhere a ``ValueError`` saying so (never a silent float32). ``"bfloat16"``
    needs ``ml_dtypes``, which gives NumPy the dtype the host arrays (training data,
    predictions) are held in."""
    allowed = BACKEND_FLOAT_NAMES.get(backend.name, FLOAT_NAMES)
    text = dtype_text(dtype)
    if text in LOW_PRECISION_NAMES and text not in allowed:
        raise ValueError(f"{name}={text!r} is not supported on the {backend.name!r} backend, which computes in "
                         f"{' or '.join(repr(a) for a in allowed)}; use backend='torch' for low precision")
    text = check_dtype_name(dtype, name, allowed)
    if text == "bfloat16":
        try:
            import ml_dtypes  # noqa: F401 - registers NumPy's "bfloat16"
        except ImportError as err:
            raise ValueError(f"{name}='bfloat16' needs the ml_dtypes package for its host arrays: "
                             "pip install ml_dtypes") from err
    return text
