"""What a network needs from torch beyond arrays: the module base, variables, activations, the
optimisers (``torch.optim``) and the training step."""

import itertools

import numpy as np

from ..base import check_loss_value
from ..dtypes import FLOAT_NAMES, LOW_PRECISION_NAMES, dtype_text
from ..plain_module import AdapterBase
from .contract import is_compiling
from .optimizers import TorchOptimizer


def _follow_dtype(root, dtype):
    """After a cast of ``root``'s parameters to ``dtype``: the stencils its layers hold (shared
    ones stay shared, see ``SphericalStencil.with_dtype``), and the dtype the modules convert
    host data to, follow; the layers then rebuild their tables ahead of use."""
    for module in root.modules():
        changed = False
        for name, value in list(vars(module).items()):
            if not hasattr(value, "on_backend") or getattr(value, "dtype", dtype) == dtype:
                continue  # (on_backend: the objects holding backend arrays, see NativeModule._fc_rebind)
            if not callable(getattr(value, "with_dtype", None)):
                raise TypeError(f"{type(root).__name__} cannot be cast to {dtype}: its {type(value).__name__} "
                                f"({name}) holds {value.dtype} arrays and has no cast; build the network with "
                                f"dtype={dtype!r} instead")
            object.__setattr__(module, name, value.with_dtype(dtype))
            changed = True
        if getattr(module, "dtype", None) in FLOAT_NAMES + LOW_PRECISION_NAMES and module.dtype != dtype:
            object.__setattr__(module, "dtype", dtype)
            changed = True
        if changed:
            module.__dict__.pop("_fc_evaluator", None)
            module._fc_prepare()


class Framework(AdapterBase):
    """What a network needs from torch beyond arrays (``backend.nn``).

    ``norm_sync``: ``None``, or (while ``fit`` trains under a process group) a differentiable
    sum over the ranks that batch-norm layers use for their statistics (see ``distributed.py``).
    """

    norm_sync = None

    def __init__(self, backend):
        import torch

        super().__init__(backend)
        self.torch = torch

        class TorchModule(torch.nn.Module):
            def _apply(self, fn, *args, **kwargs):
                # .to(device) / .cuda() / .cpu(): follow the parameters to their new device;
                # .bfloat16() / .half() / .to(dtype): their new dtype.
                out = super()._apply(fn, *args, **kwargs)
                tensors = itertools.chain(self.parameters(), self.buffers())
                device = next((t.device for t in tensors), None)
                if device is not None and device != self.backend.device:
                    from .. import get_backend

                    self._fc_rebind(get_backend("torch", device))
                floats = (t for t in self.parameters() if t.is_floating_point())
                dtype = next((dtype_text(t.dtype) for t in floats), None)
                if dtype is not None:
                    _follow_dtype(self, dtype)
                return out

        self.module_base = TorchModule

    def parameter(self, value, dtype):
        return self.torch.nn.Parameter(self.backend.asarray(np.asarray(value), dtype=dtype))

    def add_state(self, module, name, value, dtype):
        module.register_buffer(name, self.backend.asarray(np.asarray(value), dtype=dtype))

    def module_list(self, modules):
        return self.torch.nn.ModuleList(modules)

    def assign(self, variable, value):
        """Set a parameter or state in place, from host data or a tensor (not differentiated)."""
        with self.torch.no_grad():
            if isinstance(value, self.torch.Tensor):
                variable.copy_(value.detach())
            else:
                variable.copy_(self.torch.as_tensor(np.asarray(value), dtype=variable.dtype))

    def relu(self, x):
        return self.torch.relu(x)

    def sigmoid(self, x):
        return self.torch.sigmoid(x)

    def softmax(self, x, axis):
        return self.torch.softmax(x, dim=axis)

    def gelu(self, x):
        return self.torch.nn.functional.gelu(x)

    def assert_finite(self, x, message):
        return self.backend.assert_finite(x, message)

    def no_grad(self):
        return self.torch.no_grad()

    def fused_batch_norm(self, norm, x):
        """torch's batch norm kernel (running statistics updated in place, unbiased variance).

        While a graph is traced the input is made contiguous first: torch's CPU kernel returns a
        contiguous result for a strided (B, C, N) input (a convolution's output, a transposed
        (B, N, C)) where its shape function promises the input's strides, and graphs run
        without Inductor (``backend="aot_eager"``) then fail on the next view."""
        if self.norm_sync is not None:
            return None  # statistics over the global batch: the written-once version, synchronised
        if is_compiling(self.torch):
            x = x.contiguous()
        return self.torch.nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.scale, norm.shift,
                                                   norm.training, norm.momentum, norm.eps)

    def optimizer(self, model, kind, lr, weight_decay, momentum):
        """A ``torch.optim`` optimiser ("adam", "adamw" or "sgd") over ``model``'s parameters."""
        return TorchOptimizer(self.torch, model.parameters(), kind, lr, weight_decay, momentum)

    def trainer(self, model, objective, optimizer):
        """A function ``(x, y, w) -> loss float`` running one step of ``optimizer`` on
        ``objective(model(x), y, w)``."""
        native = optimizer.native

        def step(x, y, w):
            native.zero_grad(set_to_none=True)
            loss = objective(model(x), y, w)
            check_loss_value(loss, self.torch.is_tensor)
            loss.backward()
            native.step()
            return float(loss.detach())

        return step

    def distribution(self, model=None):
        """The distribution ``fit`` and ``Synthesis.run`` follow: a :class:`~.distributed.ProcessGroup`
        when ``torch.distributed`` has an initialised process group (``torchrun``), otherwise
        the single-process default (see :class:`~foscat_core.backends.base.SingleProcess`)."""
        from ..base import SINGLE_PROCESS
        from .distributed import distribution

        return distribution(self.torch, self) or SINGLE_PROCESS

    def evaluator(self, model):
        def run(x):
            with self.torch.no_grad():
                return model(x)

        return run

    def keras_layer(self, model, name=None):
        raise TypeError(f"as_keras_layer needs a network built with backend='tensorflow'; this one is on "
                        f"backend={self.backend.name!r} (save it and load it with backend='tensorflow')")

    def recomputes(self, modules):
        """True when :meth:`checkpoint` with these modules would recompute (grad enabled, one trains)."""
        return self.torch.is_grad_enabled() and any(m.training for m in modules)

    def checkpoint(self, fn, *args):
        """``fn(*args)`` with its activations recomputed in the backward pass instead of kept
        (``torch.utils.checkpoint``, non-reentrant) while grad is enabled and a module among
        ``args`` trains; otherwise plainly ``fn(*args)``.

        The modules ``fn`` uses must be among ``args``: the recomputation restores their buffers
        afterwards, so batch-norm running statistics are updated once per step, as without."""
        import contextlib

        from torch.utils.checkpoint import checkpoint

        torch = self.torch
        modules = [a for a in args if isinstance(a, torch.nn.Module)]
        if not self.recomputes(modules):
            return fn(*args)
        buffers = [b for m in modules for b in m.buffers()]

        @contextlib.contextmanager
        def keep_buffers():
            kept = [b.detach().clone() for b in buffers]
            try:
                yield
            finally:
                with torch.no_grad():
                    for b, k in zip(buffers, kept):
                        b.copy_(k)

        return checkpoint(fn, *args, use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), keep_buffers()))
