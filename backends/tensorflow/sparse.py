"""The TensorFlow stencil product: COO sparse-dense products (``SparseTensorDenseMatMul``), CSR for wide ones.

``out[b] = A @ reshape(xt[b] @ wr, (N_in * P, C_out))`` with ``A`` (N_out, N_in * P) sparse: every
row holds at most 4 * P nonzeros (P stencil taps, 4 bilinear neighbours each; column ``m * P + p``
= tap p read at input cell m).

The sparse factor is applied with ``tf.raw_ops.SparseTensorDenseMatMul`` on COO components
(int32 indices when they fit, values in the working dtype). Measured on one CPU core at nside 64
(P = 25, 4.7 M nonzeros), it is 3-6x faster than ``SparseMatrixMatMul`` on a ``CSRSparseMatrix``,
its transposed product needs no second copy of the matrix (``adjoint_a``), and its components are
ordinary tensors that a ``tf.function`` captures like any constant (a CSR variant tensor cannot be
captured, so it had to be rebuilt inside every graph). From 32 dense columns on that kernel takes a path
~10x slower, so products with more than 16 columns (network layers) use ``SparseMatrixMatMul`` on a
CSR built from the same components (cached eagerly, converted in the graph under
``tf.function``). The product has a hand-written gradient
with respect to the dense operand only (TensorFlow's registered one also computes the gradient of
the sparse values: two gathers of nnz rows, wasted here).

Forward, two equivalent orders; the one whose sparse stage carries fewer channels is used:

* interpolate first (``C_in <= C_out``): ``A_i`` (N_out * P, N_in), row ``n * P + p`` = the
  bilinear weights of tap p of cell n, interpolates ``xt[b]`` to (N_out, P * C_in), then one dense
  matmul with the kernel reordered to (P * C_in, C_out). For P = 1 ``A_i`` is ``A`` itself.
* contract first (``C_in > C_out``): ``z = xt[b] @ wr`` viewed as (N_in * P, C_out), then ``A @ z``.

The dense stages and reshapes are ordinary TensorFlow ops, so their gradients are TensorFlow's own
(and a kernel that no tape watches gets no gradient computed). A batch of known size is processed
element by element (no (B, ...) transposes); an unknown batch size (inside a ``tf.function``
traced with a free batch dimension) becomes extra columns of one sparse product (a ``tf.map_fn``
loop would need the gradient of a while loop over captured constants, which TensorFlow cannot
build when the function is called under an eager tape).

Under XLA (``tf.function(jit_compile=True)``, or Keras ``jit_compile=True``) neither sparse kernel
exists, so the product is a gather instead, always interpolate-first: padded-row ("ELL") tables
``cols``/``vals`` of ``A_i``, shape (N_out * P, m) (zero-weight padding), made on the host from
the COO components once per P, then ``sum_k vals[:, k] * x[cols[:, k]]`` over the whole batch
(one ``tf.gather`` on the cell axis per slot k) and the dense matmul: the algorithm of
``backends/jax/contract.py``. Its gradient is TensorFlow's own (a scatter-add). Measured on one
CPU core (nside 64, B=8, K=3, 32->32 and 64->32 channels), forward and gradients take about
twice as long under XLA as with the sparse kernels in a plain ``tf.function`` (1.05 s against
0.53 s, 2.0 s against 1.1 s): XLA is there for GPUs and Keras ``jit_compile``, not for CPU speed.
The XLA context is read from the graph being traced (:func:`in_xla_context`), so a product
traced outside one keeps the sparse kernels. A ``tf.function`` traced outside XLA and then called
inside a ``jit_compile`` function is reused as traced (TensorFlow's trace cache ignores the XLA
context), and XLA then refuses its sparse kernel: call it first (or only) under XLA.
"""

import numpy as np


class TfStencilOperator:
    """A sparse operator (N_out, N_in * P) for :func:`stencil_contract`.

    Built eagerly (the backend wraps the constructor in ``tf.init_scope()`` and
    ``tf.device(...)``) from its host forms (``backends/sparse_forms.py``): the COO components of
    the forms actually used are uploaded (the contract form ``A`` at construction, the
    interpolate-first form ``A_i`` or its padded rows on first use for a given P), nothing is
    read back from the device.
    """

    def __init__(self, tf, forms, dtype, device):
        self.tf = tf
        self.shape = forms.shape
        self.dtype = dtype
        self.device = device
        self._host = forms
        self._forms = {}
        self._forms["contract"] = self._upload_coo("contract", 1)

    def _upload_coo(self, kind, n_points):
        rows, cols, values = self._host.coo(kind, n_points)
        coo = _aligned_empty((len(rows), 2), self._host.index_dtype)
        coo[:, 0], coo[:, 1] = rows, cols
        del rows, cols
        vals = _aligned_empty((len(values),), self.dtype.as_numpy_dtype)
        vals[:] = values
        shape = self._host.form_shape(kind, n_points)
        with self.tf.init_scope(), self.tf.device(self.device):
            return self._tensor(coo), self._tensor(vals), self._shape_tensor(shape)

    def _tensor(self, array):
        """A tensor over a host array made by :func:`_aligned_empty`: shared, not copied, on CPU (a
        plain conversion keeps a second copy's worth of memory: 2x the operator's size)."""
        tf = self.tf
        if "GPU" not in str(self.device).upper():
            try:
                return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
            except (AttributeError, TypeError, ValueError, RuntimeError, tf.errors.OpError):
                pass
        return tf.convert_to_tensor(array)

    def _shape_tensor(self, shape):
        return self.tf.constant(np.asarray(shape, dtype=np.int64))

    def form(self, kind, n_points):
        """COO components ``(indices, values, dense_shape)`` of ``A`` (``"contract"``) or of
        ``A_i`` (``"interp"``, rows ``n * P + p``, columns = input cells) for P = ``n_points``."""
        if kind == "contract" or n_points == 1:
            return self._forms["contract"]
        key = ("interp", n_points)
        if key not in self._forms:
            self._forms[key] = self._upload_coo("interp", n_points)
        return self._forms[key]

    def ell(self, n_points):
        """Padded-row tables ``(cols, vals)`` of ``A_i`` (rows ``n * P + p``, see :meth:`form`)
        for P = ``n_points``, each of shape (N_out * P, m), m the most nonzeros of a row."""
        key = ("ell", n_points)
        if key not in self._forms:
            cols, vals = self._host.ell("interp", n_points)
            with self.tf.init_scope(), self.tf.device(self.device):
                self._forms[key] = (self.tf.constant(cols), self.tf.constant(vals.astype(self.dtype.as_numpy_dtype)))
        return self._forms[key]

    def csr(self, form):
        """The ``CSRSparseMatrix`` of a form: converted once and cached when eager; converted in
        the graph (one O(nnz) op) inside a ``tf.function``, which cannot capture a CSR variant."""
        tf = self.tf
        convert = tf.raw_ops.SparseTensorToCSRSparseMatrix
        if not tf.executing_eagerly():
            return convert(indices=tf.cast(form[0], tf.int64), values=form[1], dense_shape=form[2])
        key = ("csr", id(form[0]))
        if key not in self._forms:
            with tf.device(self.device):
                self._forms[key] = convert(indices=tf.cast(form[0], tf.int64), values=form[1], dense_shape=form[2])
        return self._forms[key]


def _aligned_empty(shape, dtype, align=64):
    """An uninitialised host array whose data start on an ``align``-byte boundary (TensorFlow's
    kernels assume 64-byte aligned buffers)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


# SparseTensorDenseMatMul is the fastest product up to this many dense columns (and 2-5x faster
# than SparseMatrixMatMul below 16 in float64); from 32 columns on its kernel switches to a path
# ~10x slower, where the row-parallel CSR kernel wins (measured on one CPU core).
_COO_MAX_COLUMNS = 16


def sparse_matmul(tf, op, form, b, adjoint=False):
    """``A @ b`` (or ``A^T @ b``) for a form of ``op`` and a dense (rows, C) ``b``; differentiable in ``b``."""
    indices, values, shape = form
    columns = b.shape[1]

    @tf.custom_gradient
    def product(b):
        if columns is not None and columns <= _COO_MAX_COLUMNS:
            out = tf.raw_ops.SparseTensorDenseMatMul(a_indices=indices, a_values=values, a_shape=shape, b=b,
                                                     adjoint_a=adjoint)
        else:
            out = tf.raw_ops.SparseMatrixMatMul(a=op.csr(form), b=b, adjoint_a=adjoint)

        def grad(g):
            return sparse_matmul(tf, op, form, g, not adjoint)

        return out, grad

    return product(b)


def stencil_contract(tf, xt, wr, op):
    """See ``Backend.stencil_contract``; ``op`` a :class:`TfStencilOperator`."""
    n_in = int(xt.shape[1])
    n_out = op.shape[0]
    n_points = op.shape[1] // n_in
    c_in = int(wr.shape[0])
    c_out = int(wr.shape[1]) // n_points
    batch = xt.shape[0]
    if in_xla_context(tf):
        return _gather_contract(tf, xt, wr, op, n_points, c_in, c_out)
    if c_in <= c_out:
        a_i = op.form("interp", n_points)
        # (C_in, P * C_out) -> (P * C_in, C_out): row p * C_in + c, column o.
        w_i = tf.reshape(tf.transpose(tf.reshape(wr, (c_in, n_points, c_out)), (1, 0, 2)), (n_points * c_in, c_out))
        if batch is None:  # the batch as extra columns of one product (no loop in the graph)
            xi = sparse_matmul(tf, op, a_i, tf.reshape(tf.transpose(xt, (1, 0, 2)), (n_in, -1)))
            xi = tf.transpose(tf.reshape(xi, (n_out, n_points, -1, c_in)), (2, 0, 1, 3))
            return tf.reshape(tf.linalg.matmul(tf.reshape(xi, (-1, n_points * c_in)), w_i), (-1, n_out, c_out))

        def one(xb):
            xi = sparse_matmul(tf, op, a_i, xb)
            return tf.linalg.matmul(tf.reshape(xi, (n_out, n_points * c_in)), w_i)

    else:
        a = op.form("contract", n_points)
        if batch is None:
            z = tf.reshape(tf.linalg.matmul(tf.reshape(xt, (-1, c_in)), wr), (-1, n_in * n_points, c_out))
            out = sparse_matmul(tf, op, a, tf.reshape(tf.transpose(z, (1, 0, 2)), (n_in * n_points, -1)))
            return tf.transpose(tf.reshape(out, (n_out, -1, c_out)), (1, 0, 2))

        def one(xb):
            return sparse_matmul(tf, op, a, tf.reshape(tf.linalg.matmul(xb, wr), (n_in * n_points, c_out)))

    if batch == 0:  # an empty batch: tf.stack([]) would lose the (N_out, C_out) dims
        return tf.zeros((0, n_out, c_out), dtype=xt.dtype)
    if batch == 1:
        return tf.expand_dims(one(xt[0]), 0)
    return tf.stack([one(xb) for xb in tf.unstack(xt, num=int(batch))], axis=0)


def in_xla_context(tf):
    """Whether the graph being traced (or a graph it is nested in) will be compiled by XLA.

    ``tf.function(jit_compile=True)`` traces its body inside an ``XLAControlFlowContext``, which
    TensorFlow's own ops read the same way (``control_flow_util.GraphOrParentsInXlaContext``,
    not a public API: should it go, XLA refuses the sparse kernel with an error, never silently).
    Eager execution is never compiled."""
    if tf.executing_eagerly():
        return False
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _gather_contract(tf, xt, wr, op, n_points, c_in, c_out):
    """The XLA form of :func:`stencil_contract` (gathers and dense ops only; any batch size).

    Always interpolate-first, as JAX: the contract-first order needs 4 P gathers of the
    (B, N_in * P, C_out) product, whose gradients (as many scatter-adds) took ~10x longer on CPU."""
    cols, vals = op.ell(n_points)
    interp = _weighted_gather(tf, xt, cols, vals)  # (B, N_out * P, C_in)
    # (C_in, P * C_out) -> (P * C_in, C_out): row p * C_in + c, as an interpolated row is laid out.
    w_i = tf.reshape(tf.transpose(tf.reshape(wr, (c_in, n_points, c_out)), (1, 0, 2)), (n_points * c_in, c_out))
    out = tf.linalg.matmul(tf.reshape(interp, (-1, n_points * c_in)), w_i)
    return tf.reshape(out, (-1, op.shape[0], c_out))


def _weighted_gather(tf, x, cols, vals):
    """``out[b, r] = sum_k vals[r, k] * x[b, cols[r, k]]``: (B, M, C) -> (B, rows, C).

    One gather per slot k: XLA on CPU fuses each with its product and the sum, 2-4x faster
    than one gather of all m slots (a (B, rows, m, C) block) reduced by an einsum."""
    vals = tf.cast(vals, x.dtype)
    out = vals[None, :, 0, None] * tf.gather(x, cols[:, 0], axis=1)
    for k in range(1, int(cols.shape[1])):
        out = out + vals[None, :, k, None] * tf.gather(x, cols[:, k], axis=1)
    return out


def plain_matmul(tf, op, x):
    """``op @ x`` for an (N_out, N_in) operator and x (N_in, L) (``Backend.sparse_matmul``): the
    sparse kernels, or under XLA the padded-row gather; differentiable in ``x``."""
    if in_xla_context(tf):
        cols, vals = op.ell(1)
        return _weighted_gather(tf, x[None], cols, vals)[0]
    return sparse_matmul(tf, op, op.form("contract", 1), x)
