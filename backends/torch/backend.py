"""PyTorch backend: array-api-compat's torch namespace, autograd, CUDA when available.

The stencil product (``embedding_bag`` gathers in row blocks and dense matmuls, in a custom
autograd function) lives in :mod:`backends.torch.contract`.
"""

import numpy as np

from ..base import Backend, NoGradientError
from .contract import TorchStencilOperator, is_compiling, make_contract, make_matmul


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "the 'torch' backend needs PyTorch: pip install 'foscat_core[torch]' (or pip install torch)"
        ) from err
    return torch


_ACCELERATORS = ("cuda", "xpu", "mps")  # device types with a torch.<type> module telling what exists


def available_devices(torch):
    """Names of the devices this torch sees, e.g. ``['cpu', 'cuda:0', 'cuda:1']`` (``meta`` always exists too)."""
    names = ["cpu"]
    for kind in _ACCELERATORS:
        module = getattr(torch, kind, None)
        if module is not None and module.is_available():
            count = module.device_count() if hasattr(module, "device_count") else 1
            names += [kind] if kind == "mps" else [f"{kind}:{i}" for i in range(count)]
    return names


def check_device(torch, device):
    """``device`` as a ``torch.device`` after checking it exists here: a missing GPU is a ``ValueError``
    now, not an ``AssertionError`` at the first tensor, and never a silent fallback to the CPU."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err
    if dev.type == "meta":  # shapes only, on every machine
        return dev
    if dev.type == "cpu" and dev.index == 0:
        return torch.device("cpu")  # CPU tensors report "cpu": "cpu:0" would never match them
    module = getattr(torch, dev.type, None)
    present = module is not None and callable(getattr(module, "is_available", None)) and module.is_available()
    if present and dev.index is not None:
        count = module.device_count() if hasattr(module, "device_count") else 1
        present = dev.index < count
    if not present:
        raise ValueError(f"device {device!r} does not exist on this machine; torch sees "
                         f"{available_devices(torch)} (and 'meta')")
    if dev.type != "cpu" and dev.index is None and hasattr(module, "current_device"):
        # Tensors report "cuda:0", never "cuda": without an index they would never match.
        return torch.device(dev.type, module.current_device())
    return dev


class TorchBackend(Backend):
    """PyTorch arrays on ``device`` (default: CUDA when available, else CPU); a device that does not
    exist here is a ``ValueError`` (see :func:`check_device`)."""

    name = "torch"
    has_autograd = True

    def __init__(self, device=None):
        torch = _torch()
        from array_api_compat import torch as torch_xp

        self.torch = torch
        self.xp = torch_xp
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = check_device(torch, device)
        self._contract = make_contract(torch)
        self._matmul = make_matmul(torch)

    def __repr__(self):
        return f"<foscat_core backend 'torch' on {self.device}>"

    def dtype(self, name):
        return getattr(self.torch, name)

    def dtype_name(self, x):
        return str(x.dtype).replace("torch.", "")

    def is_native(self, x):
        return isinstance(x, self.torch.Tensor)

    def asarray(self, x, dtype=None):
        torch = self.torch
        dt = None if dtype is None else self.dtype(dtype)
        if isinstance(x, torch.Tensor):
            if x.device != self.device:
                raise ValueError(
                    f"tensor is on device {x.device} but this object works on {self.device}; "
                    f"move it with .to('{self.device}')"
                )
            return x if dt is None or x.dtype == dt else x.to(dt)
        x = np.asarray(x)
        try:  # (no dtype test up front: torch.compile cannot trace ndarray.dtype)
            return torch.as_tensor(x, dtype=dt, device=self.device)
        except TypeError:
            if x.dtype.name != "bfloat16":
                raise
        # ml_dtypes' bfloat16 (host arrays of a bfloat16 network), which torch does not read: its bits
        t = torch.from_numpy(x.view(np.int16).copy()).view(torch.bfloat16)
        return t.to(device=self.device, dtype=dt or torch.bfloat16)

    def to_numpy(self, x):
        if isinstance(x, self.torch.Tensor):
            x = x.detach().cpu()
            if x.dtype == self.torch.bfloat16:  # NumPy holds it as ml_dtypes' bfloat16 (same bits)
                import ml_dtypes

                return x.view(self.torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
            return x.numpy().copy()
        return np.array(x, copy=True)

    def is_compiling(self):
        return is_compiling(self.torch)

    def host_call(self, fn):
        return self.torch.compiler.disable(fn)

    def is_traced(self, x):
        return x.device.type == "meta" or is_compiling(self.torch)

    def assert_finite(self, x, message):
        """``x``, or a ``ValueError(message)`` if any value is NaN or infinite (a "meta" tensor
        holds no values to check).

        While ``torch.compile`` or ``torch.export`` traces, the check is a graph assertion
        (``torch._assert_async``) instead: no host sync and no data-dependent branch, so no
        graph break; a non-finite input then fails at run time with a ``RuntimeError`` carrying
        the same message."""
        torch = self.torch
        if x.device.type == "meta":
            return x
        finite = torch.isfinite(x).all()
        if is_compiling(torch):
            torch._assert_async(finite, message)
        elif not bool(finite):
            raise ValueError(message)
        return x

    def stop_gradient(self, x):
        return x.detach()

    def values_at_ranks(self, y, values):
        # One sort and a scatter (torch's CPU sort of a (16, 49 152) batch: ~45 ms; a second
        # argsort to invert the order would cost ~38 ms more).
        order = self.torch.argsort(y.detach(), dim=1, stable=True)
        return self.torch.empty_like(y).scatter_(1, order, values.detach().to(y.dtype).expand(y.shape[0], -1))

    def take(self, x, idx, axis):
        return self.torch.index_select(x, axis if axis >= 0 else x.ndim + axis, idx)

    def sparse_operator(self, forms, dtype):
        return TorchStencilOperator(self.torch, forms, self.dtype(dtype), self.device)

    def prepare_contract(self, operators, n_in, c_in, c_out):
        for op in operators():
            op.prepare(op.shape[1] // n_in, c_in, c_out)

    def prepare_matmul(self, op):
        op.table("contract", 1)
        op.table("adjoint", 1)

    def autocast_dtype(self):
        """The dtype name of the ``torch.autocast`` context enabled for this backend's device, or
        ``None`` outside one."""
        torch, kind = self.torch, self.device.type
        if kind == "meta" or not torch.is_autocast_enabled(kind):
            return None
        return str(torch.get_autocast_dtype(kind)).replace("torch.", "")

    def stencil_contract(self, xt, wr, op):
        amp = self.autocast_dtype()
        if amp is not None and xt.dtype != self.torch.float64:
            # As torch.nn.Conv1d under autocast (float64 left as it is): maps, weights and the
            # operator's values in the context's dtype, and the result. The gathers need no float32
            # copy: embedding_bag accumulates in float32 inside, its bfloat16 error is the output's
            # rounding (measured 1.7e-3 relative, bags of 4 or 36). Autograd casts the gradients
            # back to the inputs' dtypes.
            dt = self.dtype(amp)
            xt, wr, op = xt.to(dt), wr.to(dt), op.in_dtype(dt)
        return self._contract.apply(xt, wr.contiguous(), op)

    def sparse_matmul(self, op, x):
        amp = self.autocast_dtype()
        if amp is not None and x.dtype != self.torch.float64:  # as stencil_contract under autocast
            dt = self.dtype(amp)
            x, op = x.to(dt), op.in_dtype(dt)
        return self._matmul.apply(x, op)

    def value_and_grad(self, fn, x):
        x = x.detach().requires_grad_(True)
        value = fn(x)
        if not value.requires_grad:
            raise NoGradientError("the value does not depend on x through torch operations")
        try:
            (grad,) = self.torch.autograd.grad(value, x)
        except RuntimeError as err:
            if "not have been used in the graph" in str(err):
                raise NoGradientError("the value does not depend on x through torch operations") from err
            raise
        return value.detach(), grad
