"""PyTorch backend: array-api-compat's torch namespace, autograd, CUDA when available.

The stencil product uses ``embedding_bag`` (a fused gather-weight-sum, several times faster on CPU
than a CSR matmul) inside a custom autograd function whose backward runs the transposed product
in row chunks, so no large temporary is ever allocated twice.
"""

import numpy as np

from .base import Backend


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "the 'torch' backend needs PyTorch: pip install 'foscat_core[torch]' (or pip install torch)"
        ) from err
    return torch


class _TorchSparse:
    """A CSR operator (N_out, N_in * P) and its transpose, as embedding_bag arguments."""

    def __init__(self, torch, indptr, indices, data, shape, dtype, device):
        import scipy.sparse as sp

        self.shape = tuple(shape)
        mat = sp.csr_matrix((data, indices, indptr), shape=shape)
        mat_t = mat.T.tocsr()
        as_index = lambda a: torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64), device=device)
        as_value = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
        self.fwd = (as_index(mat.indices), as_index(mat.indptr), as_value(mat.data))
        self.bwd = (as_index(mat_t.indices), as_index(mat_t.indptr), as_value(mat_t.data))
        self.bwd_indptr_host = mat_t.indptr.astype(np.int64)

    @staticmethod
    def _apply(torch, table, dense, rows=None, indptr_host=None):
        indices, indptr, values = table
        if rows is None:
            return torch.nn.functional.embedding_bag(
                indices, dense, indptr[:-1], mode="sum", per_sample_weights=values
            )
        r0, r1 = rows
        lo, hi = int(indptr_host[r0]), int(indptr_host[r1])
        return torch.nn.functional.embedding_bag(
            indices[lo:hi], dense, indptr[r0:r1] - lo, mode="sum", per_sample_weights=values[lo:hi]
        )


def _make_contract(torch):
    class StencilContract(torch.autograd.Function):
        """out[b] = op @ reshape(xt[b] @ wr, (N_in * P, C_out)); see Backend.stencil_contract."""

        @staticmethod
        def forward(ctx, xt, wr, op):
            batch, n_in, _ = xt.shape
            n_points = op.shape[1] // n_in
            c_out = wr.shape[1] // n_points
            out = xt.new_empty((batch, op.shape[0], c_out))
            z = xt.new_empty((n_in, n_points * c_out))  # reused across the batch
            for b in range(batch):
                torch.mm(xt[b], wr, out=z)
                out[b] = _TorchSparse._apply(torch, op.fwd, z.view(n_in * n_points, c_out))
            ctx.save_for_backward(xt, wr)
            ctx.op = op
            return out

        @staticmethod
        def backward(ctx, grad):
            xt, wr = ctx.saved_tensors
            op = ctx.op
            need_x, need_w = ctx.needs_input_grad[:2]
            batch, n_in, _ = xt.shape
            n_points = op.shape[1] // n_in
            c_out = wr.shape[1] // n_points
            grad = grad.contiguous()
            gx = torch.empty_like(xt) if need_x else None
            gw = torch.zeros_like(wr) if need_w else None
            # Row chunks of the transposed product keep each temporary around 4 MB.
            step = max(1, (4 << 20) // (n_points * c_out * xt.element_size()))
            for b in range(batch):
                for r0 in range(0, n_in, step):
                    r1 = min(n_in, r0 + step)
                    gz = _TorchSparse._apply(
                        torch, op.bwd, grad[b], (r0 * n_points, r1 * n_points), op.bwd_indptr_host
                    ).view(r1 - r0, n_points * c_out)
                    if need_w:
                        gw.addmm_(xt[b, r0:r1].T, gz)
                    if need_x:
                        torch.mm(gz, wr.T, out=gx[b, r0:r1])
            return gx, gw, None

    return StencilContract


class TorchBackend(Backend):
    """PyTorch arrays on ``device`` (default: CUDA when available, else CPU)."""

    name = "torch"
    has_autograd = True

    def __init__(self, device=None):
        torch = _torch()
        from array_api_compat import torch as torch_xp

        self.torch = torch
        self.xp = torch_xp
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err
        self._contract = _make_contract(torch)

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
        return torch.as_tensor(np.asarray(x), dtype=dt, device=self.device)

    def to_numpy(self, x):
        if isinstance(x, self.torch.Tensor):
            return x.detach().cpu().numpy().copy()
        return np.array(x, copy=True)

    def take(self, x, idx, axis):
        return self.torch.index_select(x, axis if axis >= 0 else x.ndim + axis, idx)

    def sparse_operator(self, indptr, indices, data, shape, dtype):
        return _TorchSparse(self.torch, indptr, indices, data, shape, self.dtype(dtype), self.device)

    def stencil_contract(self, xt, wr, op):
        return self._contract.apply(xt.contiguous(), wr.contiguous(), op)

    def value_and_grad(self, fn, x):
        x = x.detach().requires_grad_(True)
        value = fn(x)
        (grad,) = self.torch.autograd.grad(value, x)
        return value.detach(), grad
