"""The PyTorch stencil product: fused gathers (``embedding_bag``) in row blocks, dense matmuls.

``out[b] = A @ reshape(xt[b] @ wr, (N_in * P, C_out))`` with ``A`` (N_out, N_in * P) sparse, at
most 4 * P nonzeros per row (P stencil taps, 4 bilinear neighbours each; column ``m * P + p``
= tap p read at input cell m). ``embedding_bag(mode="sum", per_sample_weights=...)`` is a fused
gather-weight-sum and several times faster on CPU than a CSR matmul; it exists on CUDA too.

Forward, two equivalent orders (same flops in the dense stage):

* interpolate first (``C_in <= 2 C_out``, see :func:`interpolate_first`): ``A_i``
  (N_out * P, N_in), row ``n * P + p`` = the bilinear weights of tap p of cell n, gathers rows of
  the small input ``xt[b]`` into (rows, P * C_in) and one matmul with the kernel reordered to
  (P * C_in, C_out) writes the output rows. Done in blocks of output rows so the interpolated
  block stays in cache and no (N, P * C) temporary is ever allocated.
* contract first (otherwise): ``z = xt[b] @ wr`` viewed as (N_in * P, C_out), then the
  gather ``A @ z`` (fewer gathered channels); one ``z`` buffer reused over the batch.

Backward (both orders): ``gz[b] = A^T @ g[b]`` with the transposed operator (row ``m * P + p``),
again in blocks of input rows, viewed as (rows, P * C_out); ``gx[b] = gz @ wr^T`` and
``gw += xt[b]^T @ gz``. The input is saved as given (a view of the caller's tensor, no copy).

The gather tables (CSR of ``A``, ``A_i`` and ``A^T`` split into row blocks) are derived on the host
from the operator, once per P, on first use (the adjoint in the forward pass, so never inside a
backward trace), and moved to the device. Indices are int32 when they fit.

Not chosen, measured (CPU, nside 64, B=8, 32->32, 1 thread): one gather over the whole batch
(x laid out as (N, B * C)) gathers ~25% faster but the matmul then needs a (B, N) transpose or
P small matmuls, slower overall; ``torch.sparse_csr_tensor`` products are ~2x slower than
``embedding_bag``; unblocked gathers into (N * P, C) temporaries cost page faults and cache misses
(the interpolate-first forward was slower than contract-first without blocks).
"""

import sys

import numpy as np

# Bags (output rows of one gather) per block and CPU thread: ~16k rows x C channels keep a
# block's temporaries within L2 / L3 (measured, nside 64, 32 channels: 8k-32k bags within a few %
# on 1 thread, 32k best on 2). On CUDA one block per batch element (fewer launches).
_CPU_BLOCK_BAGS = 16384


def interpolate_first(c_in, c_out):
    """The forward order: the gather reads C_in channels (interpolate first) or C_out (contract
    first, from an N * P * C_out temporary). Measured on CPU (nside 64, K=3): interpolating first
    is faster up to C_in ~ 2 C_out (32->32: 1.4x, 16->64: 2.2x), contracting first beyond it
    (128->32: 1.3x); interpolating first also allocates no large temporary."""
    return c_in <= 2 * c_out


class TorchStencilOperator:
    """A sparse operator (N_out, N_in * P) for :func:`stencil_contract`, from CSR arrays."""

    def __init__(self, torch, indptr, indices, data, shape, dtype, device):
        import scipy.sparse as sp

        self.torch = torch
        self.shape = tuple(int(s) for s in shape)
        self.dtype, self.device = dtype, device
        wide = max(len(indices), self.shape[0], self.shape[1]) >= 2**31
        self._np_index = np.int64 if wide else np.int32
        self._index_dtype = torch.int64 if wide else torch.int32
        # Host CSR (the tables below are re-sortings of it, made per P on first use; building them
        # on the host also works for torch's "meta" device). On CPU, the "contract" table shares
        # its memory.
        np_dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(dtype, np.float64)
        self._host = sp.csr_matrix(
            (np.asarray(data, dtype=np_dtype), np.asarray(indices, dtype=self._np_index),
             np.asarray(indptr, dtype=self._np_index)),
            shape=self.shape,
        )
        self._bases = {}
        self._tables = {}
        self._build = self._blocks
        if _compiler_loaded(torch, "disable"):
            self._build = torch.compiler.disable(self._blocks)  # host work: never traced

    def table(self, kind, n_points, threads=1):
        """Gather table ``"contract"`` (A), ``"interp"`` (A_i) or ``"adjoint"`` (A^T) for
        P = ``n_points``: a list of row blocks (cell0, cell1, indices, offsets, weights), each
        covering whole cells, built on first use. On CPU the block size grows with the thread
        count (each gather and matmul then has enough rows to share out)."""
        if kind == "contract" or self.device.type == "cuda":
            block_bags = None  # contract: one block, its source z is whole anyway
        else:
            block_bags = _CPU_BLOCK_BAGS * max(1, min(8, threads))
        key = (kind, n_points, block_bags)
        if key not in self._tables:
            self._tables[key] = self._build(kind, n_points, block_bags)
        return self._tables[key]

    def _base(self, kind, n_points):
        """(CSR of the form on the host, its indices and weights on the device, cells, P)."""
        key = (kind, n_points)
        if key not in self._bases:
            import scipy.sparse as sp

            mat = self._host
            n_out, n_in = self.shape[0], self.shape[1] // n_points
            if kind == "contract":
                cells, taps = n_out, 1
            elif kind == "interp":
                coo = mat.tocoo()
                rows = coo.row.astype(np.int64) * n_points + coo.col % n_points
                mat = sp.csr_matrix((coo.data, (rows, coo.col // n_points)), shape=(n_out * n_points, n_in))
                cells, taps = n_out, n_points
            else:
                mat, cells, taps = mat.T.tocsr(), n_in, n_points
            if kind != "contract":  # (the host CSR may share the caller's arrays: left as given)
                mat.sort_indices()
            idx = self.torch.as_tensor(mat.indices.astype(self._np_index, copy=False), device=self.device)
            wgt = self.torch.as_tensor(mat.data, dtype=self.dtype, device=self.device)
            self._bases[key] = (mat.indptr.astype(np.int64), idx, wgt, cells, taps)
        return self._bases[key]

    def _blocks(self, kind, n_points, block_bags):
        torch = self.torch
        indptr, idx, wgt, n_cells, n_points = self._base(kind, n_points)
        step = n_cells if block_bags is None else max(1, block_bags // n_points)
        blocks = []
        for c0 in range(0, n_cells, step):
            c1 = min(n_cells, c0 + step)
            r0, r1 = c0 * n_points, c1 * n_points
            lo, hi = int(indptr[r0]), int(indptr[r1])
            offsets = torch.as_tensor((indptr[r0:r1] - lo).astype(self._np_index), device=self.device)
            blocks.append((c0, c1, idx[lo:hi], offsets, wgt[lo:hi]))
        return blocks


def _gather(torch, block, dense):
    _, _, idx, offsets, wgt = block
    return torch.nn.functional.embedding_bag(idx, dense, offsets, mode="sum", per_sample_weights=wgt)


class _RowBuffer:
    """Row-major (N, C) slices of a (B, N, C) tensor: the slice itself when it already is, else a
    copy into one buffer reused over the batch (no fresh allocation per batch element)."""

    def __init__(self, t):
        self.t, self.buf = t, None

    def __getitem__(self, b):
        s = self.t[b]
        if s.is_contiguous():
            return s
        if self.buf is None:
            self.buf = s.new_empty(s.shape)
        return self.buf.copy_(s)


def _compiler_loaded(torch, name):
    """True when torch.compile's machinery is already imported. Its decorators import it
    (~1 s and ~130 MB), which a user who never compiles should not pay; a user who compiles has
    it loaded by the time the first operator is built inside the trace."""
    return "torch._dynamo" in sys.modules and hasattr(getattr(torch, "compiler", None), name)


def make_contract(torch):
    def threads():
        return torch.get_num_threads()

    if _compiler_loaded(torch, "assume_constant_result"):
        # read once while torch.compile traces (a block size), not a graph break
        threads = torch.compiler.assume_constant_result(threads)

    class StencilContract(torch.autograd.Function):
        """out[b] = op @ reshape(xt[b] @ wr, (N_in * P, C_out)); see Backend.stencil_contract."""

        @staticmethod
        def forward(ctx, xt, wr, op):
            batch, n_in, c_in = xt.shape
            n_points = op.shape[1] // n_in
            c_out = wr.shape[1] // n_points
            out = xt.new_empty((batch, op.shape[0], c_out))
            if interpolate_first(c_in, c_out):
                # (P * C_in, C_out): row p * C_in + c = wr[c, p * C_out : (p + 1) * C_out]
                wp = wr.view(c_in, n_points, c_out).transpose(0, 1).reshape(n_points * c_in, c_out)
                rows = _RowBuffer(xt)
                for b in range(batch):
                    xb = rows[b]
                    for block in op.table("interp", n_points, threads()):
                        r0, r1 = block[0], block[1]
                        t = _gather(torch, block, xb).view(r1 - r0, n_points * c_in)
                        torch.mm(t, wp, out=out[b, r0:r1])
            else:
                z = xt.new_empty((n_in, n_points * c_out))  # reused across the batch
                zv = z.view(n_in * n_points, c_out)
                for b in range(batch):
                    torch.mm(xt[b], wr, out=z)
                    for block in op.table("contract", n_points):
                        out[b, block[0]:block[1]] = _gather(torch, block, zv)
            if any(ctx.needs_input_grad[:2]):
                op.table("adjoint", n_points, threads())  # built now, outside any backward trace
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
            adjoint = op.table("adjoint", n_points, threads())
            gx = xt.new_empty(xt.shape) if need_x else None
            gw = torch.zeros_like(wr) if need_w else None
            wr_t = wr.T
            rows = _RowBuffer(grad)
            for b in range(batch):
                gb = rows[b]
                for block in adjoint:
                    r0, r1 = block[0], block[1]
                    gz = _gather(torch, block, gb).view(r1 - r0, n_points * c_out)
                    if need_w:
                        gw.addmm_(xt[b, r0:r1].T, gz)
                    if need_x:
                        torch.mm(gz, wr_t, out=gx[b, r0:r1])
            return gx, gw, None

    return StencilContract
