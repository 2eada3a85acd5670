"""The JAX stencil product: a gather of the contracted input and a sorted segment sum.

``out[b] = A @ reshape(xt[b] @ wr, (N_in * P, C_out))`` with ``A`` (N_out, N_in * P) sparse CSR.
The operator's index tables are NumPy constants held on the host and placed on the device once, so
under ``jax.jit`` they are static: no host round trip inside a traced function, and the gradient
(with respect to ``xt`` and ``wr``) is JAX's own transpose of the gather and segment sum.
"""

import numpy as np


class JaxStencilOperator:
    """A sparse (N_out, N_in * P) operator as device arrays: row of each entry (sorted), column, value."""

    def __init__(self, jnp, device_put, indptr, indices, data, shape, dtype, device):
        indptr = np.asarray(indptr, dtype=np.int64)
        rows = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(indptr))
        index_dtype = np.int32 if max(shape) < 2**31 else np.int64
        self.shape = (int(shape[0]), int(shape[1]))
        self.rows = device_put(rows.astype(index_dtype), device)
        self.cols = device_put(np.asarray(indices).astype(index_dtype), device)
        self.vals = device_put(np.asarray(data, dtype=dtype), device)


def stencil_contract(jax, xt, wr, op):
    """``(B, N_in, C_in) x (C_in, P * C_out) -> (B, N_out, C_out)``; see the module docstring."""
    jnp = jax.numpy
    b, n_in, _ = xt.shape
    n_points = op.shape[1] // n_in
    c_out = wr.shape[1] // n_points
    z = jnp.reshape(jnp.matmul(xt, wr), (b, n_in * n_points, c_out))
    picked = jnp.take(z, op.cols, axis=1) * op.vals.astype(z.dtype)[None, :, None]  # (B, nnz, C_out)
    summed = jax.ops.segment_sum(jnp.moveaxis(picked, 1, 0), op.rows, num_segments=op.shape[0],
                                 indices_are_sorted=True)  # (N_out, B, C_out)
    return jnp.moveaxis(summed, 0, 1)
