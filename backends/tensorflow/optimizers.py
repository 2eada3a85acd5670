"""TensorFlow twins of ``torch.optim`` Adam, AdamW and SGD, written to follow torch's update step
for step (the tests compare the trajectories). They expose ``set_hyper(lr, weight_decay)``,
``state_arrays()`` and ``load_state_arrays()``, which is all ``fit`` and its checkpoints need."""

import numpy as np


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
