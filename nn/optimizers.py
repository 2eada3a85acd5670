"""Optimiser names, learning-rate schedules and hyper-parameter checks for ``fit``.

The optimisers themselves belong to each backend (``backend.nn.optimizer``): ``torch.optim`` on
torch, step-for-step twins on TensorFlow, optax on JAX.
"""

import math
import numbers

OPTIMIZERS = ("adam", "adamw", "sgd")


def check_hyper(value, name, positive):
    """``value`` as a float, finite and > 0 (``positive``) or >= 0; TypeError / ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def check_optimizer(optimizer, momentum):
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    momentum = check_hyper(momentum, "momentum", positive=False)
    if momentum >= 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    return optimizer, momentum


def cosine_schedule(n_epoch, min_factor=0.0):
    """``epoch -> factor``: half a cosine from 1 at epoch 0 down to ``min_factor`` at ``n_epoch``.

    >>> f = cosine_schedule(4)
    >>> [round(f(e), 3) for e in range(4)]
    [1.0, 0.854, 0.5, 0.146]
    """
    min_factor = check_hyper(min_factor, "min_factor", positive=False)
    return lambda epoch: min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * epoch / n_epoch))


def step_schedule(step_size, gamma=0.1):
    """``epoch -> gamma ** (epoch // step_size)``: the rate drops by ``gamma`` every ``step_size`` epochs.

    >>> f = step_schedule(2, gamma=0.5)
    >>> [f(e) for e in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
        raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
    gamma = check_hyper(gamma, "gamma", positive=True)
    return lambda epoch: gamma ** (epoch // int(step_size))


def resolve_schedule(lr_schedule, n_epoch):
    """``None`` (constant), ``"cosine"`` (:func:`cosine_schedule` over ``n_epoch``), ``"step"``
    (:func:`step_schedule` with a third of ``n_epoch`` per step, ``gamma=0.1``) or a callable
    ``epoch -> factor`` (epochs counted from 0) → a callable, or ``None``."""
    if lr_schedule is None or callable(lr_schedule):
        return lr_schedule
    if lr_schedule == "cosine":
        return cosine_schedule(n_epoch)
    if lr_schedule == "step":
        return step_schedule(max(1, n_epoch // 3))
    raise ValueError(f"lr_schedule must be None, 'cosine', 'step' or a callable epoch -> factor, got {lr_schedule!r}")


def scheduled_lr(lr, schedule, epoch):
    """The learning rate of ``epoch``: ``lr * schedule(epoch)``, the factor checked."""
    if schedule is None:
        return lr
    factor = schedule(epoch)
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not math.isfinite(factor) or factor < 0:
        raise ValueError(f"lr_schedule({epoch}) must return a finite number >= 0, got {factor!r}")
    return lr * float(factor)
