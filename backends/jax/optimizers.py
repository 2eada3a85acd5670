"""optax twins of ``torch.optim`` Adam, AdamW and SGD, step for step (the tests compare the
trajectories), behind the interface ``fit`` uses: ``set_hyper(lr, weight_decay)`` and
``state_arrays()`` / ``load_state_arrays()`` with torch's slot names, so a checkpoint's optimiser
arrays read the same on every framework.

The optimiser works on the list of a network's trainable arrays in ``parameters()`` order (slot
``i`` is parameter ``i``, as in torch). ``lr`` and ``weight_decay`` are
``optax.inject_hyperparams`` arguments held in the optimiser state, so a schedule changes them
without recompiling the training step.
"""

import numpy as np

BETAS, EPS = (0.9, 0.999), 1e-8


def _factory(optax, kind, momentum):
    """``(learning_rate, weight_decay) -> optax.GradientTransformation`` of torch's optimiser ``kind``."""

    def adam(learning_rate, weight_decay):
        # torch's Adam: L2 decay added to the gradient before the moments.
        return optax.chain(optax.add_decayed_weights(weight_decay),
                           optax.scale_by_adam(b1=BETAS[0], b2=BETAS[1], eps=EPS),
                           optax.scale_by_learning_rate(learning_rate))

    def adamw(learning_rate, weight_decay):
        # torch's AdamW: w <- w - lr * (adam step + wd * w), the decay outside the moments.
        return optax.chain(optax.scale_by_adam(b1=BETAS[0], b2=BETAS[1], eps=EPS),
                           optax.add_decayed_weights(weight_decay),
                           optax.scale_by_learning_rate(learning_rate))

    def sgd(learning_rate, weight_decay):
        # torch's SGD (dampening 0, not Nesterov): buf = m * buf + (g + wd * w), w -= lr * buf.
        parts = [optax.add_decayed_weights(weight_decay)]
        if momentum:
            parts.append(optax.trace(decay=momentum, nesterov=False))
        return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))

    return {"adam": adam, "adamw": adamw, "sgd": sgd}[kind]


class JaxOptimizer:
    """An optax optimiser over a list of parameter arrays.

    Parameters
    ----------
    jax, optax : modules
    params : list of jax.Array
        The network's trainable arrays in ``parameters()`` order.
    kind : {"adam", "adamw", "sgd"}
    lr, weight_decay, momentum : float
    device : jax.Device
        Where the state lives (the network's device).

    Attributes
    ----------
    state : optax state
        Passed through the compiled training step and replaced by its result.
    """

    def __init__(self, jax, optax, params, kind, lr, weight_decay, momentum, device):
        self.jax, self.kind, self.device = jax, kind, device
        params = list(params)
        # Hyper-parameters in the parameters' dtype: a float64 rate (64-bit mode) would promote
        # the updates of a float32 network to float64.
        hyper = optax.inject_hyperparams(_factory(optax, kind, momentum), hyperparam_dtype=params[0].dtype)
        self.tx = hyper(learning_rate=lr, weight_decay=weight_decay)
        self.state = self._put(self.tx.init(params))
        self.count = 0  # optimiser steps taken (torch's "step")

    def _put(self, tree):
        # Committed to the device like the step's outputs: an uncommitted input would compile
        # the step a second time.
        return self.jax.device_put(tree, self.device)

    def set_hyper(self, lr, weight_decay):
        """New learning rate and weight decay, used by the next step without recompiling."""
        hyper = self.state.hyperparams
        for key, value in (("learning_rate", lr), ("weight_decay", weight_decay)):
            hyper[key] = self._put(np.asarray(value, dtype=hyper[key].dtype))

    def _slots(self):
        """``({torch slot name: list of arrays}, index of the Adam state in the chain or None)``."""
        inner = self.state.inner_state
        if self.kind != "sgd":
            index = 1 if self.kind == "adam" else 0
            return {"exp_avg": inner[index].mu, "exp_avg_sq": inner[index].nu}, index
        return ({"momentum_buffer": inner[1].trace} if len(inner) == 3 else {}), None

    def state_arrays(self):
        """``{"step": int, "<i>.<slot>": ndarray}`` (torch's slot names)."""
        out = {"step": np.asarray(self.count, np.int64)}
        for slot, values in self._slots()[0].items():
            out.update({f"{i}.{slot}": np.array(self.jax.device_get(v)) for i, v in enumerate(values)})
        return out

    def load_state_arrays(self, arrays):
        """Restore what :meth:`state_arrays` wrote (a torch or TensorFlow checkpoint's too)."""
        jnp = self.jax.numpy
        self.count = int(arrays["step"])
        slots, index = self._slots()
        inner = list(self.state.inner_state)
        for slot, values in slots.items():
            loaded = [jnp.asarray(np.asarray(arrays[f"{i}.{slot}"]), dtype=v.dtype) for i, v in enumerate(values)]
            if slot == "momentum_buffer":
                inner[1] = inner[1]._replace(trace=loaded)
            else:
                field = "mu" if slot == "exp_avg" else "nu"
                inner[index] = inner[index]._replace(**{field: loaded})
        if index is not None:
            inner[index] = inner[index]._replace(count=jnp.asarray(self.count, dtype=inner[index].count.dtype))
        self.state = self._put(self.state._replace(inner_state=tuple(inner)))

    def update(self, grads, state, params):
        """``(updates, new_state)`` for lists of arrays; traced inside the training step."""
        return self.tx.update(grads, state, params)
