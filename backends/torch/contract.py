"""The PyTorch stencil product: fused gathers (``embedding_bag``) in row blocks, dense matmuls.

``out[b] = A @ reshape(xt[b] @ wr, (N_in * P, C_out))`` with ``A`` (N_out, N_in * P) sparse, at
most 4 * P nonzeros per row (P stencil taps, 4 bilinear neighbours each; column ``m * P + p``
= tap p read at input cell m). ``embedding_bag(mode="sum", per_sample_weights=...)`` is a fused
gather-weight-sum and several times faster on CPU than a CSR matmul; it exists on CUDA too.

Forward, two equivalent orders (same flops in the dense stage):

* interpolate first (``C_in <= 2 C_out``, or a ``z`` below over 32 MiB; see
  :func:`interpolate_first`): ``A_i``
  (N_out * P, N_in), row ``n * P + p`` = the bilinear weights of tap p of cell n, gathers rows of
  the small input ``xt[b]`` into (rows, P * C_in) and one matmul with the kernel reordered to
  (P * C_in, C_out) writes the output rows. Done in blocks of output rows so the interpolated
  block stays in cache and no (N, P * C) temporary is ever allocated.
* contract first (otherwise): ``z = xt[b] @ wr`` viewed as (N_in * P, C_out), then the
  gather ``A @ z`` (fewer gathered channels); one ``z`` buffer reused over the batch.

Backward (both orders): ``gz[b] = A^T @ g[b]`` with the transposed operator (row ``m * P + p``),
again in blocks of input rows, viewed as (rows, P * C_out); ``gx[b] = gz @ wr^T`` and
``gw += xt[b]^T @ gz``. The input is saved as given (a view of the caller's tensor, no copy).

The gather tables (CSR of ``A``, ``A_i`` and ``A^T`` split into row blocks) are the host forms of
``backends/sparse_forms.py``, uploaded once per P: ahead of time by
:meth:`TorchStencilOperator.prepare` (networks call it when built, so ``torch.compile`` and
``torch.export`` trace dictionary look-ups only, never host code), else on first use (the adjoint in
the forward pass, so never inside a backward trace). The block size is fixed when the operator is
made, from ``torch.get_num_threads()`` then (nothing is read from the host while a graph is
traced). Indices are int32 when they fit.

While ``torch.compile`` or ``torch.export`` traces the product (``is_compiling``), the same blocked
gathers and matmuls run in functional form (``_traced_forward`` / ``_traced_backward``: no ``out=``
buffers, which a traced graph turns into copies), as fast as the eager path, one loop iteration
per batch element: a graph is specialised to its batch size (``torch.compile`` recompiles once
for a new one; an exported program takes the batch size it was exported with). Measured and not
chosen for the traced form (nside 64 disc, B=8): the batch in the gathered columns (one gather
per block, (N, B * C) layout) is 4-8x slower (transposes); the batch folded into the rows
(indices shifted by b * N, a dynamic batch) is 1.2-3x slower.

Low precision (a bfloat16 / float16 stencil, or ``torch.autocast``: see
``TorchBackend.stencil_contract``): gathers and matmuls run in the 16-bit dtype, with the operator's
values cast once (:meth:`TorchStencilOperator.in_dtype`, sharing the index tables);
``embedding_bag`` sums in float32 inside, so only its output is rounded. The weight gradient, a sum
over the batch and the row blocks, is accumulated in float32 and rounded once at the end.

Not chosen, measured (CPU, nside 64, B=8, 32->32, 1 thread): one gather over the whole batch
(x laid out as (N, B * C)) gathers ~25% faster but the matmul then needs a (B, N) transpose or
P small matmuls, slower overall; ``torch.sparse_csr_tensor`` products are ~2x slower than
``embedding_bag``; unblocked gathers into (N * P, C) temporaries cost page faults and cache misses
(the interpolate-first forward was slower than contract-first without blocks).
"""

import contextlib

import numpy as np

# Bags (output rows of one gather) per block and CPU thread: ~16k rows x C channels keep a
# block's temporaries within L2 / L3 (measured, nside 64, 32 channels: 8k-32k bags within a few %
# on 1 thread, 32k best on 2). On CUDA one block per batch element (fewer launches).
_CPU_BLOCK_BAGS = 16384
# Largest N_in * P * C_out temporary (bytes) contracting first may allocate: at nside 256, 48 -> 16
# channels it would be 453 MB, a third of a checkpointed U-Net step's peak and fresh memory at
# every call; interpolating first needs only cache-sized blocks.
_CONTRACT_FIRST_MAX_BYTES = 32 << 20


def interpolate_first(c_in, c_out, n_in, n_points, itemsize):
    """The forward order: the gather reads C_in channels (interpolate first) or C_out (contract
    first, from an N_in * P * C_out temporary). Measured on CPU (nside 64, K=3): interpolating first
    is faster up to C_in ~ 2 C_out (32->32: 1.4x, 16->64: 2.2x), contracting first beyond it
    (128->32: 1.3x), unless its temporary would exceed ``_CONTRACT_FIRST_MAX_BYTES``."""
    return c_in <= 2 * c_out or n_in * n_points * c_out * itemsize > _CONTRACT_FIRST_MAX_BYTES


class TorchStencilOperator:
    """A sparse operator (N_out, N_in * P) for :func:`stencil_contract`, from CSR arrays."""

    def __init__(self, torch, forms, dtype, device):
        self.torch = torch
        self.shape = forms.shape
        self.dtype, self.device = dtype, device
        self._index_dtype = torch.int64 if forms.index_dtype == np.int64 else torch.int32
        # The host forms (``backends.sparse_forms``): the tables below are uploads of them, made
        # per P on first use; host-made, they also work for torch's "meta" device.
        self._host = forms
        self._bases = {}
        self._tables = {}
        self._casts, self._parent = {}, None
        # Bags per block, fixed now: on CPU it grows with the thread count (each gather and matmul
        # then has enough rows to share out); on CUDA one block per batch element.
        threads = max(1, min(8, torch.get_num_threads()))
        self._block_bags = None if device.type == "cuda" else _CPU_BLOCK_BAGS * threads

    def in_dtype(self, dtype):
        """This operator with its values in ``dtype`` (``torch.autocast``): the same index tables
        on the device, the weights cast once, kept for later calls."""
        if dtype == self.dtype:
            return self
        if dtype not in self._casts:
            other = object.__new__(type(self))
            other.__dict__.update(self.__dict__)
            other.dtype, other._bases, other._tables, other._casts = dtype, {}, {}, {}
            other._parent = self
            self._casts[dtype] = other
        return self._casts[dtype]

    def prepare(self, n_points, c_in, c_out):
        """Build now the tables a product with ``c_in`` input and ``c_out`` output channels per
        tap (P = ``n_points``) reads, forward and backward, so none is built while traced."""
        first = interpolate_first(c_in, c_out, self.shape[1] // n_points, n_points, self.dtype.itemsize)
        self.table("interp" if first else "contract", n_points)
        self.table("adjoint", n_points)

    def table(self, kind, n_points):
        """Gather table ``"contract"`` (A), ``"interp"`` (A_i) or ``"adjoint"`` (A^T) for
        P = ``n_points``: a list of row blocks (cell0, cell1, indices, offsets, weights), each
        covering whole cells, built on first use (or by :meth:`prepare`)."""
        key = (kind, n_points)
        if key not in self._tables and self._parent is not None and is_compiling(self.torch):
            # A cast first met in a traced graph: its weights cast in the graph, from the parent's
            # prepared tables (no graph break; eager calls cast once and keep it).
            return [(*block[:4], block[4].to(self.dtype)) for block in self._parent.table(kind, n_points)]
        if key not in self._tables:
            build = self._blocks
            if is_compiling(self.torch):  # not prepared: built outside the graph (a graph break)
                build = self.torch.compiler.disable(self._blocks)
            # contract: one block, its source z is whole anyway
            self._tables[key] = build(kind, n_points, None if kind == "contract" else self._block_bags)
        return self._tables[key]

    def _base(self, kind, n_points):
        """(CSR of the form on the host, its indices and weights on the device, cells, P)."""
        key = (kind, n_points)
        if key not in self._bases and self._parent is not None:  # a cast: the parent's indices, shared
            indptr, idx, wgt, cells, taps = self._parent._base(kind, n_points)
            self._bases[key] = (indptr, idx, wgt.to(self.dtype), cells, taps)
        if key not in self._bases:
            indptr, indices, values = self._host.csr(kind, n_points)
            cells = self.shape[0] if kind != "adjoint" else self.shape[1] // n_points
            taps = 1 if kind == "contract" else n_points
            idx = self.torch.as_tensor(indices, device=self.device)
            wgt = self.torch.as_tensor(values, device=self.device).to(self.dtype)
            self._bases[key] = (indptr, idx, wgt, cells, taps)
        return self._bases[key]

    def _blocks(self, kind, n_points, block_bags):
        with _real_tensors(self.torch):  # real device tensors, even when torch.export traces
            return self._make_blocks(kind, n_points, block_bags)

    def _make_blocks(self, kind, n_points, block_bags):
        torch = self.torch
        indptr, idx, wgt, n_cells, n_points = self._base(kind, n_points)
        step = n_cells if block_bags is None else max(1, block_bags // n_points)
        blocks = []
        for c0 in range(0, n_cells, step):
            c1 = min(n_cells, c0 + step)
            r0, r1 = c0 * n_points, c1 * n_points
            lo, hi = int(indptr[r0]), int(indptr[r1])
            offsets = torch.as_tensor(indptr[r0:r1] - lo, device=self.device).to(self._index_dtype)
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


def _real_tensors(torch):
    """A context in which tensors made from host data are real even under ``torch.export``'s
    fake-tensor mode (the tables are cached: a fake one would break every later eager call)."""
    fake = getattr(getattr(torch, "_subclasses", None), "fake_tensor", None)
    unset = getattr(fake, "unset_fake_temporarily", None)
    return unset() if unset is not None else contextlib.nullcontext()


def _rows(torch, table, dense, width):
    """``A @ dense`` for the row blocks of ``table``, viewed as (cells, width): one (N, C) map."""
    if len(table) == 1:
        return _gather(torch, table[0], dense).view(-1, width)
    return torch.cat([_gather(torch, block, dense).view(-1, width) for block in table])


def _traced_forward(torch, xt, wr, op, n_points):
    """The forward as traced graphs want it: the same blocked gathers and matmuls per batch
    element as the eager path, but functional (no preallocated outputs written in place, which
    a traced graph would turn into copies; it plans its own memory)."""
    c_in, c_out = xt.shape[2], wr.shape[1] // n_points
    if interpolate_first(c_in, c_out, xt.shape[1], n_points, xt.element_size()):
        wp = wr.reshape(c_in, n_points, c_out).transpose(0, 1).reshape(n_points * c_in, c_out)
        table = op.table("interp", n_points)
        return torch.stack([_rows(torch, table, xt[b].contiguous(), n_points * c_in) @ wp
                            for b in range(xt.shape[0])])
    table = op.table("contract", n_points)
    return torch.stack([_rows(torch, table, (xt[b] @ wr).view(-1, c_out), c_out) for b in range(xt.shape[0])])


def _traced_backward(torch, xt, wr, op, n_points, grad, need_x, need_w):
    adjoint, width = op.table("adjoint", n_points), wr.shape[1]
    gx, gw = [], None
    for b in range(xt.shape[0]):
        gb, rows = grad[b].contiguous(), []
        for block in adjoint:
            gz = _gather(torch, block, gb).view(-1, width)  # (cells, P * C_out)
            if need_w:
                part = xt[b, block[0]:block[1]].T @ gz
                gw = part.to(_accumulation(torch, wr.dtype)) if gw is None else gw + part
            if need_x:
                rows.append(gz @ wr.T)
        if need_x:
            gx.append(rows[0] if len(rows) == 1 else torch.cat(rows))
    return (torch.stack(gx) if need_x else None), (gw.to(wr.dtype) if need_w else None)


def _accumulation(torch, dtype):
    """The dtype the weight gradient is summed in over the batch and the row blocks: float32 for
    16-bit weights (a bfloat16 running sum would round every partial sum to 3 digits)."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def is_compiling(torch):
    """True while ``torch.compile`` or ``torch.export`` traces (a constant in the traced code)."""
    compiler = getattr(torch, "compiler", None)
    return compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling()


def make_contract(torch):
    class StencilContract(torch.autograd.Function):
        """out[b] = op @ reshape(xt[b] @ wr, (N_in * P, C_out)); see Backend.stencil_contract.

        Eager: blocked, in place, one batch element at a time (cache-sized temporaries). While
        ``torch.compile`` / ``torch.export`` trace it: the functional form of the same above."""

        @staticmethod
        def forward(ctx, xt, wr, op):
            batch, n_in, c_in = xt.shape
            n_points = op.shape[1] // n_in
            c_out = wr.shape[1] // n_points
            ctx.save_for_backward(xt, wr)
            ctx.op = op
            if is_compiling(torch):
                return _traced_forward(torch, xt, wr, op, n_points)
            out = xt.new_empty((batch, op.shape[0], c_out))
            if interpolate_first(c_in, c_out, n_in, n_points, xt.element_size()):
                # (P * C_in, C_out): row p * C_in + c = wr[c, p * C_out : (p + 1) * C_out]
                wp = wr.view(c_in, n_points, c_out).transpose(0, 1).reshape(n_points * c_in, c_out)
                rows = _RowBuffer(xt)
                for b in range(batch):
                    xb = rows[b]
                    for block in op.table("interp", n_points):
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
                op.table("adjoint", n_points)  # built now, outside any backward trace
            return out

        @staticmethod
        def backward(ctx, grad):
            xt, wr = ctx.saved_tensors
            op = ctx.op
            need_x, need_w = ctx.needs_input_grad[:2]
            batch, n_in, _ = xt.shape
            n_points = op.shape[1] // n_in
            c_out = wr.shape[1] // n_points
            if is_compiling(torch):
                return (*_traced_backward(torch, xt, wr, op, n_points, grad, need_x, need_w), None)
            adjoint = op.table("adjoint", n_points)
            gx = xt.new_empty(xt.shape) if need_x else None
            gw = torch.zeros(wr.shape, dtype=_accumulation(torch, wr.dtype), device=wr.device) if need_w else None
            wr_t = wr.T
            rows = _RowBuffer(grad)
            for b in range(batch):
                gb = rows[b]
                for block in adjoint:
                    r0, r1 = block[0], block[1]
                    gz = _gather(torch, block, gb).view(r1 - r0, n_points * c_out)
                    if need_w:
                        if gw.dtype == gz.dtype:
                            gw.addmm_(xt[b, r0:r1].T, gz)
                        else:
                            gw += xt[b, r0:r1].T @ gz
                    if need_x:
                        torch.mm(gz, wr_t, out=gx[b, r0:r1])
            return gx, (gw.to(wr.dtype) if need_w else None), None

    return StencilContract


def make_matmul(torch):
    class SparseMatmul(torch.autograd.Function):
        """``op @ x`` for an (N_out, N_in) operator (P = 1) and x (N_in, L): fused gathers of the
        rows of ``x``; the gradient ``op^T @ g`` the same way, from the adjoint table."""

        @staticmethod
        def forward(ctx, x, op):
            ctx.op = op
            if ctx.needs_input_grad[0]:
                op.table("adjoint", 1)  # built now, outside any backward trace
            return _rows(torch, op.table("contract", 1), x.contiguous(), x.shape[1])

        @staticmethod
        def backward(ctx, grad):
            return _rows(torch, ctx.op.table("adjoint", 1), grad.contiguous(), grad.shape[1]), None

    return SparseMatmul
