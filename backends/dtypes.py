"""Floating dtype names, parsed once for every backend and the layers above."""

FLOAT_NAMES = ("float32", "float64")


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
