"""Arithmetic of coefficients that may be complex, stored as real arrays with a trailing (re, im) axis.

>>> import numpy as np
>>> z, w = np.array([[1.0, 2.0]]), np.array([3.0])  # 1 + 2j and the real 3
>>> apply_op(np, "mul", z, True, w, False)
(array([[3., 6.]]), True)
"""


def apply_op(xp, op, a, ac, b, bc):
    """``a op b`` where ``ac``/``bc`` say whether an operand is complex (trailing pair axis)."""
    if not ac and not bc:
        return real_op(op, a, b), False
    if op in ("add", "sub"):
        if ac and bc:
            return (a + b if op == "add" else a - b), True
        if ac:  # complex a, real b: b goes to the real part
            re = a[..., 0] + b if op == "add" else a[..., 0] - b
            return xp.stack([re, a[..., 1] + 0 * re], axis=-1), True
        re = a + b[..., 0] if op == "add" else a - b[..., 0]
        im = b[..., 1] + 0 * re
        return xp.stack([re, im if op == "add" else -im], axis=-1), True
    if op == "mul":
        if ac and bc:
            ar, ai, br, bi = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
            return xp.stack([ar * br - ai * bi, ar * bi + ai * br], axis=-1), True
        return (a * expand(xp, b) if ac else expand(xp, a) * b), True
    # division
    if not bc:
        return a / expand(xp, b), True
    br, bi = b[..., 0], b[..., 1]
    den = br * br + bi * bi
    if ac:
        ar, ai = a[..., 0], a[..., 1]
        return xp.stack([(ar * br + ai * bi) / den, (ai * br - ar * bi) / den], axis=-1), True
    return xp.stack([a * br / den, -a * bi / den], axis=-1), True


def expand(xp, v):
    return xp.expand_dims(v, axis=-1) if len(getattr(v, "shape", ())) > 0 else v


def real_op(op, a, b):
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    return a / b
