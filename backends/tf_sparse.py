"""The TensorFlow stencil product: CSR sparse-dense products with a hand-written gradient.

``out[b] = A @ reshape(xt[b] @ wr, (N_in * P, C_out))`` with ``A`` (N_out, N_in * P) sparse: every
row holds at most 4 * P nonzeros (P stencil taps, 4 bilinear neighbours each). The sparse factor
is applied with ``tf.raw_ops.SparseMatrixMatMul`` on a ``CSRSparseMatrix`` (GPU kernels via
cuSPARSE, a row-parallel Eigen kernel on CPU), one batch element at a time (``tf.map_fn``), so
no (B, N * P, C) temporary and no transpose of one is ever made.

Forward, two equivalent orders; the one whose sparse stage carries fewer channels is used:

* interpolate first (``C_in <= C_out``): ``A_i`` (N_out * P, N_in), row ``n * P + p`` = the
  bilinear weights of tap p of cell n, interpolates ``xt[b]`` to (N_out, P * C_in), then one dense
  matmul with the kernel reordered to (P * C_in, C_out). The gathers read the small input.
* contract first (``C_in > C_out``): ``z = xt[b] @ wr`` viewed as (N_in * P, C_out), then ``A @ z``.

Backward (the same for both orders): ``gz[b] = A^T @ g[b]`` with a pre-built transposed CSR,
viewed as (N_in, P * C_out); ``gx[b] = gz[b] @ wr^T`` and ``gw = sum_b xt[b]^T @ gz[b]``.

A ``CSRSparseMatrix`` is a variant tensor that a ``tf.function`` cannot capture from outside
(its shape/type handle data is lost), so the operator keeps its COO components as ordinary
constants (built eagerly, never graph-bound) and: eagerly, uses a CSR converted once and cached;
inside a graph, converts the components in the graph (one O(nnz) op per call, a few ms on CPU).
"""

import numpy as np

# Iterations of the per-batch loop that may run at once inside a graph (memory: one
# (N * P, C) temporary each).
_PARALLEL_ITERATIONS = 4


class TfStencilOperator:
    """A CSR operator (N_out, N_in * P) for :func:`stencil_contract`.

    Built eagerly (the backend wraps the constructor in ``tf.init_scope()`` and
    ``tf.device(...)``); the interpolate-first form, which needs P, is built on first use under
    the same scopes.
    """

    def __init__(self, tf, indptr, indices, data, shape, dtype, device):
        import scipy.sparse as sp

        self.tf = tf
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.device = device
        mat = sp.csr_matrix(
            (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
            shape=self.shape,
        )
        mat.sum_duplicates()  # canonical CSR: sorted column indices, no repeats
        self._host = mat
        self._forms = {}  # name -> (components, eager CSR or None)
        with tf.init_scope(), tf.device(device):
            self._add_form("fwd", mat)
            self._add_form("bwd", mat.T.tocsr())

    # --- construction -------------------------------------------------------------------
    def _add_form(self, name, mat):
        tf = self.tf
        mat.sum_duplicates()
        coo = mat.tocoo()  # row-major order: what the CSR conversion expects
        comps = (
            tf.constant(np.stack([coo.row, coo.col], axis=1).astype(np.int64)),
            tf.constant(coo.data, dtype=self.dtype),
            tf.constant(np.asarray(mat.shape, dtype=np.int64)),
        )
        self._forms[name] = (comps, self._to_csr(comps))

    def _interp_form(self, n_points):
        """A_i (N_out * P, N_in): entry (n * P + p, m) = weight of column m * P + p in row n."""
        name = ("interp", n_points)
        if name not in self._forms:
            tf = self.tf
            coo = self._host.tocoo()
            n_out, cols = self.shape[0], self.shape[1] // n_points
            import scipy.sparse as sp

            mat = sp.csr_matrix(
                (coo.data, (coo.row * n_points + coo.col % n_points, coo.col // n_points)),
                shape=(n_out * n_points, cols),
            )
            with tf.init_scope(), tf.device(self.device):
                self._add_form(name, mat)
        return name

    def _to_csr(self, comps):
        indices, values, dense_shape = comps
        return self.tf.raw_ops.SparseTensorToCSRSparseMatrix(indices=indices, values=values, dense_shape=dense_shape)

    def csr(self, name):
        """The CSRSparseMatrix ``name``: the cached one eagerly, a fresh conversion in a graph."""
        comps, eager = self._forms[name]
        if self.tf.executing_eagerly():
            return eager
        return self._to_csr(comps)


def stencil_contract(tf, xt, wr, op):
    """See ``Backend.stencil_contract``; ``op`` a :class:`TfStencilOperator`."""
    n_in = int(xt.shape[1])
    n_out = op.shape[0]
    n_points = op.shape[1] // n_in
    c_in = int(wr.shape[0])
    c_out = int(wr.shape[1]) // n_points
    smm = tf.raw_ops.SparseMatrixMatMul
    interp_first = c_in <= c_out
    interp_name = op._interp_form(n_points) if interp_first else None

    @tf.custom_gradient
    def contract(xt, wr):
        if interp_first:
            a_i = op.csr(interp_name)
            # (C_in, P * C_out) -> (P * C_in, C_out): row p * C_in + c, column o.
            w_i = tf.reshape(tf.transpose(tf.reshape(wr, (c_in, n_points, c_out)), (1, 0, 2)), (n_points * c_in, c_out))

            def one(xb):
                xi = tf.reshape(smm(a=a_i, b=xb), (n_out, n_points * c_in))
                return tf.linalg.matmul(xi, w_i)

        else:
            a = op.csr("fwd")

            def one(xb):
                return smm(a=a, b=tf.reshape(tf.linalg.matmul(xb, wr), (n_in * n_points, c_out)))

        out = tf.map_fn(one, xt, parallel_iterations=_PARALLEL_ITERATIONS)

        def grad(g):
            a_t = op.csr("bwd")

            def one_back(args):
                gb, xb = args
                gz = tf.reshape(smm(a=a_t, b=gb), (n_in, n_points * c_out))
                return (tf.linalg.matmul(gz, wr, transpose_b=True), tf.linalg.matmul(xb, gz, transpose_a=True))

            gx, gw = tf.map_fn(
                one_back, (g, xt), fn_output_signature=(xt.dtype, xt.dtype), parallel_iterations=_PARALLEL_ITERATIONS
            )
            return gx, tf.reduce_sum(gw, axis=0)

        return out, grad

    return contract(xt, wr)
