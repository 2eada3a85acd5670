"""What a network needs from JAX beyond arrays: a ``flax.nnx.Module`` base, ``nnx.Param`` /
``nnx.BatchStat`` variables, activations, the optimisers (optax twins of torch's) and the
training step compiled with ``nnx.jit``.

Modules are nnx graph nodes that are not JAX pytrees (``pytree=False``): nnx finds the variables
by walking the attributes (``nnx.state(net, nnx.Param)``), while everything else a layer holds
(stencils, plans, the config, the training flag) is static in the graph definition. So the
training flag is a Python value read at trace time: a compiled forward is traced once per flag.
Inside a user's ``jax.jit`` a network runs in evaluation mode (training mode writes the batch-norm
statistics, which only ``nnx.jit`` carries out of a trace; ``jax.jit`` raises nnx's
``TraceContextError``). Needs flax >= 0.12 (``pytree=False`` modules, variables read with ``[...]``).
"""

import contextlib
import functools
import operator

import numpy as np

from ..base import check_loss_value
from ..plain_module import AdapterBase, PlainModule
from .optimizers import JaxOptimizer


class _VariableState:
    """An nnx Variable's kind and value, as a module's copied or pickled state holds it."""

    def __init__(self, kind, value):
        self.kind, self.value = kind, value


class Framework(AdapterBase):
    """What a network needs from JAX beyond arrays (``backend.nn``)."""

    def __init__(self, backend):
        import jax
        import optax
        from flax import nnx
        from flax.nnx import pytreelib

        super().__init__(backend)
        self.jax, self.optax, self.nnx = jax, optax, nnx

        class JaxModuleMeta(type(nnx.Module)):
            def __call__(cls, *args, backend=None, device=None, **kwargs):
                if backend is None and device is None:  # this class: nnx builds it
                    return super().__call__(*args, **kwargs)
                # type(net)(..., backend=...) may mean another framework: NativeModule picks the
                # class from the portable one (nnx would run __init__ a second time).
                return cls._fc_portable(*args, backend=backend, device=device, **kwargs)

        class JaxModule(PlainModule, nnx.Module, metaclass=JaxModuleMeta, pytree=False):
            def __init_subclass__(cls, **kwargs):
                # Every layer class (built by NativeModule with type()) is a graph node, not a pytree.
                super().__init_subclass__(**{"pytree": False, **kwargs})

            # copy.deepcopy through __getstate__, as for torch and TF modules (NativeModule's drops
            # the compiled evaluator, which is bound to the original), not nnx's graph copy.
            __deepcopy__ = None

            def __getstate__(self):
                # Variables travel as (kind, value): copying or pickling an nnx Variable itself
                # gives back its bare array, which training could no longer update.
                return {k: _VariableState(type(v), v[...]) if isinstance(v, nnx.Variable) else v
                        for k, v in vars(self).items()}

            def __setstate__(self, state):
                vars(self).update({k: v.kind(v.value) if isinstance(v, _VariableState) else v
                                   for k, v in state.items()})

            def __init__(self):
                if "_pytree__state" not in vars(self):
                    # Built by NativeModule.__new__ (object.__new__), past nnx's metaclass call,
                    # which is where nnx sets its bookkeeping.
                    object.__setattr__(self, "_pytree__state", pytreelib.PytreeState())
                    object.__setattr__(self, "_pytree__nodes", type(self)._pytree__nodes)
                PlainModule.__init__(self)

        self.module_base = JaxModule

    def parameter(self, value, dtype):
        return self.nnx.Param(self.backend.asarray(np.asarray(value), dtype=dtype))

    def add_state(self, module, name, value, dtype):
        setattr(module, name, self.nnx.BatchStat(self.backend.asarray(np.asarray(value), dtype=dtype)))

    def module_list(self, modules):
        return list(modules)

    def value(self, variable):
        """The array an ``nnx.Variable`` holds (for operations that only take arrays)."""
        return variable[...]

    def assign(self, variable, value):
        """Set a variable's value from host data or a JAX array of its shape (cast to its dtype).

        Inside ``nnx.jit`` (the training step) this updates the traced copy, which nnx writes
        back; a traced value assigned to a variable outside such a transform is nnx's error."""
        current = variable[...]
        if not self.backend.is_native(value):
            value = self.backend.asarray(np.asarray(value), dtype=np.dtype(current.dtype).name)
        if tuple(value.shape) != tuple(current.shape):
            raise ValueError(f"value has shape {tuple(value.shape)} but the variable has shape {tuple(current.shape)}")
        variable[...] = value.astype(current.dtype)

    def relu(self, x):
        return self.jax.nn.relu(x)

    def sigmoid(self, x):
        return self.jax.nn.sigmoid(x)

    def softmax(self, x, axis):
        return self.jax.nn.softmax(x, axis=axis)

    def gelu(self, x):
        return self.jax.nn.gelu(x, approximate=False)

    def assert_finite(self, x, message):
        return self.backend.assert_finite(x, message)

    def no_grad(self):
        return contextlib.nullcontext()  # JAX differentiates only what a transform asks for

    def fused_batch_norm(self, norm, x):
        return None  # XLA fuses the written-once version

    def _param_paths(self, model):
        """nnx paths of ``model.parameters()``, in that (registration) order."""
        paths = {id(node): path for path, node in self.nnx.graph.iter_graph(model)
                 if isinstance(node, self.nnx.Variable)}
        return [paths[id(p)] for p in model.parameters()]

    def optimizer(self, model, kind, lr, weight_decay, momentum):
        """The optax twin of torch's optimiser ``kind`` ("adam", "adamw" or "sgd")."""
        return JaxOptimizer(self.jax, self.optax, [p[...] for p in model.parameters()], kind, lr, weight_decay,
                            momentum, self.backend.device)

    def trainer(self, model, objective, optimizer):
        """``step(x, y, w) -> loss float``: one optimiser step on ``objective(model(x), y, w)``,
        compiled once per training flag (batch-norm statistics updated inside)."""
        nnx, jax = self.nnx, self.jax
        paths = self._param_paths(model)

        def is_tensor(value):
            return isinstance(value, jax.Array)

        @nnx.jit
        def compiled(net, opt_state, x, y, w):
            def loss_of(net):
                loss = objective(net(x), y, w)
                check_loss_value(loss, is_tensor)  # runs while tracing: static shape
                return loss

            loss, grads = nnx.value_and_grad(loss_of)(net)
            grads = [functools.reduce(operator.getitem, path, grads)[...] for path in paths]
            params = net.parameters()
            updates, opt_state = optimizer.update(grads, opt_state, [p[...] for p in params])
            for p, u in zip(params, updates):
                p[...] = p[...] + u
            return loss, opt_state

        def step(x, y, w):
            loss, optimizer.state = compiled(model, optimizer.state, x, y, w)
            optimizer.count += 1
            return float(loss)

        return step

    def evaluator(self, model):
        """The forward compiled with ``nnx.jit`` (traced once per training flag and input shape)."""
        compiled = self.nnx.jit(lambda net, x: net(x))
        return lambda x: compiled(model, x)

    norm_sync = None  # batch-norm statistics are never synchronised across processes here

    def distribution(self, model=None):
        """Always the single-process default (see :class:`~foscat_core.backends.base.SingleProcess`)."""
        from ..base import SINGLE_PROCESS

        return SINGLE_PROCESS

    def keras_layer(self, model, name=None):
        raise TypeError(f"as_keras_layer needs a network built with backend='tensorflow'; this one is on "
                        f"backend={self.backend.name!r} (save it and load it with backend='tensorflow')")

    def recomputes(self, modules):
        """True when :meth:`checkpoint` with these modules would recompute (one of them trains)."""
        return any(m.training for m in modules)

    def checkpoint(self, fn, *args):
        """``fn(*args)`` under ``nnx.remat`` (``jax.checkpoint``: activations recomputed in the
        backward pass instead of kept) while a module among ``args`` trains; otherwise plainly
        ``fn(*args)``.

        The modules ``fn`` uses must be among ``args`` (not captured), so that nnx lifts their
        variables through the transform and carries batch-norm statistic updates out of it. Those
        updates are values of the forward pass: the recomputation does not apply them again."""
        if not self.recomputes([a for a in args if isinstance(a, self.nnx.Module)]):
            return fn(*args)
        return self.nnx.remat(fn)(*args)
