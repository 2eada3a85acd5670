"""Optimisers and learning-rate schedules for ``fit``.

torch uses ``torch.optim`` (Adam, AdamW, SGD) behind a small wrapper; TensorFlow uses the twins
below, written to follow torch's update step for step (the tests compare the trajectories).
Both expose ``set_hyper(lr, weight_decay)``, ``state_arrays()`` and ``load_state_arrays()``,
which is all ``fit`` and its checkpoints need.
"""

import math
import numbers

import numpy as np

OPTIMIZERS = ("adam", "adamw", "sgd")


class _TfOptimizer:
    """Base of the TensorFlow optimisers: ``lr`` and ``weight_decay`` are variables (a schedule
    changes them without retracing the step); the state is named as torch names it, so a
    checkpoint's optimiser arrays read the same on both frameworks."""

    slots = ()

    def __init__(self, tf, variables, lr, weight_decay, momentum=0.0):
        self.tf, self.variables = tf, list(variables)
        with tf.init_scope():
            self.lr = tf.Variable(lr, dtype=tf.float64, trainable=False)
            self.weight_decay = tf.Variable(weight_decay, dtype=tf.float64, trainable=False)
            self.momentum = momentum
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.state = {slot: [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
                          for slot in self.slots}

    def set_hyper(self, lr, weight_decay):
        self.lr.assign(lr)
        self.weight_decay.assign(weight_decay)

    def _hyper(self, var):
        return self.tf.cast(self.lr, var.dtype), self.tf.cast(self.weight_decay, var.dtype)

    def state_arrays(self):
        """``{"step": int, "<i>.<slot>": ndarray}`` (torch's slot names)."""
        out = {"step": np.asarray(int(self.step.numpy()), np.int64)}
        for slot, values in self.state.items():
            out.update({f"{i}.{slot}": v.numpy() for i, v in enumerate(values)})
        return out

    def load_state_arrays(self, arrays):
        self.step.assign(int(arrays["step"]))
        for slot, values in self.state.items():
            for i, v in enumerate(values):
                v.assign(np.asarray(arrays[f"{i}.{slot}"], dtype=v.dtype.as_numpy_dtype))


class _Adam(_TfOptimizer):
    """``torch.optim.Adam`` (L2 weight decay added to the gradient) step for step, on tf.Variables."""

    slots = ("exp_avg", "exp_avg_sq")
    betas, eps = (0.9, 0.999), 1e-8
    decoupled = False

    def apply(self, grads):
        tf = self.tf
        b1, b2 = self.betas
        self.step.assign_add(1)
        for var, grad, m, v in zip(self.variables, grads, self.state["exp_avg"], self.state["exp_avg_sq"]):
            if grad is None:
                continue
            lr, wd = self._hyper(var)
            t = tf.cast(self.step, var.dtype)
            bias1, bias2 = 1.0 - b1**t, 1.0 - b2**t
            if self.decoupled:
                var.assign(var * (1.0 - lr * wd))
            else:
                grad = grad + wd * var
            m.assign(b1 * m + (1.0 - b1) * grad)
            v.assign(b2 * v + (1.0 - b2) * grad * grad)
            denom = tf.sqrt(v) / tf.sqrt(bias2) + self.eps
            var.assign_sub((lr / bias1) * m / denom)


class _AdamW(_Adam):
    """``torch.optim.AdamW``: the weights shrink by ``lr * weight_decay`` before the Adam step."""

    decoupled = True


class _SGD(_TfOptimizer):
    """``torch.optim.SGD`` (dampening 0, not Nesterov): ``buf = momentum * buf + g``,
    ``w -= lr * buf``, with L2 weight decay added to the gradient."""

    slots = ("momentum_buffer",)

    def apply(self, grads):
        self.step.assign_add(1)
        for var, grad, buf in zip(self.variables, grads, self.state["momentum_buffer"]):
            if grad is None:
                continue
            lr, wd = self._hyper(var)
            grad = grad + wd * var
            if self.momentum:
                buf.assign(self.momentum * buf + grad)
                grad = buf
            var.assign_sub(lr * grad)


TF_OPTIMIZERS = {"adam": _Adam, "adamw": _AdamW, "sgd": _SGD}


class TorchOptimizer:
    """A ``torch.optim`` optimiser with the interface of :class:`_TfOptimizer`."""

    def __init__(self, torch, params, kind, lr, weight_decay, momentum):
        self.torch = torch
        if kind == "sgd":
            self.native = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        else:
            cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
            self.native = cls(params, lr=lr, weight_decay=weight_decay)

    def set_hyper(self, lr, weight_decay):
        for group in self.native.param_groups:
            group["lr"], group["weight_decay"] = lr, weight_decay

    def state_arrays(self):
        state = self.native.state_dict()["state"]
        steps = [int(s["step"]) for s in state.values() if "step" in s]
        out = {"step": np.asarray(steps[0] if steps else 0, np.int64)}
        for i, slots in state.items():
            out.update({f"{i}.{k}": v.detach().cpu().numpy() for k, v in slots.items() if k != "step" and v is not None})
        return out

    def load_state_arrays(self, arrays):
        current = self.native.state_dict()
        state = {}
        for key, value in arrays.items():
            if key != "step":
                i, slot = key.split(".", 1)
                state.setdefault(int(i), {})[slot] = self.torch.as_tensor(np.asarray(value))
        if "step" in arrays and int(arrays["step"]) > 0:
            for slots in state.values():
                if "exp_avg" in slots:  # Adam keeps its step count per parameter
                    slots["step"] = self.torch.tensor(float(arrays["step"]))
        self.native.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def check_loss_value(loss, is_tensor):
    """A loss function's result must be a scalar tensor of the framework (differentiable)."""
    if not is_tensor(loss):
        raise TypeError(f"loss_fn must return a scalar tensor of the network's framework, got {type(loss).__name__}")
    if len(loss.shape) != 0:
        raise ValueError(f"loss_fn must return a scalar (shape ()), got shape {tuple(loss.shape)}; "
                         "reduce it, e.g. with a mean")




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
