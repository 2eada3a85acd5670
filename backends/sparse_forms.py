"""The host forms of a stencil's sparse operator, made in one place (NumPy); backends only upload them.

A stencil operator ``A`` has shape (N_out, N_in * P): row ``n`` holds the (at most 4 P) bilinear
weights of cell ``n``, column ``m * P + p`` = tap ``p`` read at input cell ``m``. The backends
multiply by it in one of three equivalent layouts, the ``kind`` of a form:

* ``"contract"``: ``A`` itself, applied to ``reshape(x @ w, (N_in * P, C_out))``;
* ``"interp"``: ``A_i`` (N_out * P, N_in), row ``n * P + p`` = the weights of tap ``p`` of cell
  ``n`` over the input cells (interpolate first, then one dense product with the kernel);
  ``A_i == A`` when P = 1;
* ``"adjoint"``: ``A^T`` (N_in * P, N_out), for gradients.

Each form is a CSR triple (``indptr`` int64, ``indices``, ``values``; the forms made from
``"contract"`` have their columns sorted within a row); :meth:`SparseForms.ell` pads the rows of a form to one width for gather-based products (JAX,
TensorFlow under XLA). Indices are int32 when every index fits, values float64 for a float64
operator and float32 otherwise (16-bit operators are cast by the backend on upload): the
operators are among the largest objects a network holds (nside 1024 full sky, K = 3: 450 M
non-zeros), so forms other than ``"contract"`` are made on request and never cached here; each
backend keeps the device copy of the forms it uses.
"""

import numpy as np
import scipy.sparse as sp

KINDS = ("contract", "interp", "adjoint")
_CHUNK_CELLS = 1 << 16  # cells per chunk of from_taps: its temporaries stay a few MB


class SparseForms:
    """The operator ``A`` (``shape`` = (N_out, N_in * P)) as host CSR arrays, and its other forms.

    Parameters
    ----------
    indptr : array of int, shape (N_out + 1,)
    indices : array of int, shape (nnz,); column ``m * P + p``. Duplicates in a row are allowed
        (every backend's product sums them).
    data : array of float, shape (nnz,)
    shape : (int, int)
    dtype : str
        The operator's dtype name ("float32", "float64", "bfloat16", ...): float64 values are kept
        for "float64", float32 otherwise.
    """

    def __init__(self, indptr, indices, data, shape, dtype):
        self.shape = (int(shape[0]), int(shape[1]))
        indptr = np.asarray(indptr, dtype=np.int64)
        if indptr.shape != (self.shape[0] + 1,):
            raise ValueError(f"indptr must have shape ({self.shape[0] + 1},) for {self.shape[0]} rows, "
                             f"got {indptr.shape}")
        nnz = int(indptr[-1])
        indices, data = np.asarray(indices), np.asarray(data)
        if indices.shape != (nnz,) or data.shape != (nnz,):
            raise ValueError(f"indices and data must have shape ({nnz},) (indptr[-1]), got {indices.shape} "
                             f"and {data.shape}")
        self.index_dtype = np.int32 if max(nnz, *self.shape) < 2**31 - 1 else np.int64
        self.value_dtype = np.float64 if str(dtype) == "float64" else np.float32
        self._contract = (indptr, indices.astype(self.index_dtype, copy=False),
                          data.astype(self.value_dtype, copy=False))

    @classmethod
    def from_taps(cls, index, weight, dtype, tap_major=False):
        """The operator of a stencil gauge from its tap tables, zero weights (regional borders) dropped.

        ``index`` (N, P, 4) int and ``weight`` (N, P, 4) float: tap ``p`` of cell ``n`` is
        ``sum_k weight[n, p, k] * x[index[n, p, k]]``. The default is ``A`` (N, N * P), columns
        ``index * P + p``; ``tap_major=True`` gives the interpolation (P * N, N) with rows
        ``p * N + n`` (the depthwise filter's layout: its output reshapes to (P, N * maps)).
        """
        index, weight = np.asarray(index), np.asarray(weight)
        if index.shape != weight.shape or index.ndim != 3:
            raise ValueError(f"index and weight must both have shape (N, P, neighbours), got {index.shape} "
                             f"and {weight.shape}")
        n, p = index.shape[:2]
        shape = (p * n, n) if tap_major else (n, n * p)
        # Filled in chunks of cells: no table-sized temporaries (nside 1024: 450 M entries).
        counts = np.empty((p, n) if tap_major else (n,), dtype=np.int64)
        for c in range(0, n, _CHUNK_CELLS):
            keep = weight[c:c + _CHUNK_CELLS] != 0.0
            if tap_major:
                counts[:, c:c + _CHUNK_CELLS] = keep.sum(axis=2).T
            else:
                counts[c:c + _CHUNK_CELLS] = keep.sum(axis=(1, 2))
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(counts.reshape(-1), out=indptr[1:])
        nnz = int(indptr[-1])
        cols = np.empty(nnz, dtype=np.int32 if max(nnz, *shape) < 2**31 - 1 else np.int64)
        values = np.empty(nnz, dtype=np.float64 if str(dtype) == "float64" else np.float32)
        taps = np.arange(p)[None, :, None]
        for c in range(0, n, _CHUNK_CELLS):
            sl = slice(c, min(c + _CHUNK_CELLS, n))
            idx, wgt = index[sl], weight[sl]
            keep = wgt != 0.0
            if tap_major:  # rows p * N + n: one contiguous run of rows per tap
                for tap in range(p):
                    lo, hi = indptr[tap * n + sl.start], indptr[tap * n + sl.stop]
                    cols[lo:hi], values[lo:hi] = idx[:, tap][keep[:, tap]], wgt[:, tap][keep[:, tap]]
            else:
                lo, hi = indptr[sl.start], indptr[sl.stop]
                cols[lo:hi], values[lo:hi] = (idx * p + taps)[keep], wgt[keep]
        return cls(indptr, cols, values, shape, dtype)

    @property
    def nnz(self):
        return int(self._contract[0][-1])

    def n_points(self, n_in):
        """P for inputs of ``n_in`` cells."""
        if n_in <= 0 or self.shape[1] % n_in:
            raise ValueError(f"an operator with {self.shape[1]} columns cannot read inputs of {n_in} cells")
        return self.shape[1] // n_in

    def form_shape(self, kind, n_points):
        """The (rows, columns) of form ``kind`` for P = ``n_points``."""
        n_out, n_in = self.shape[0], self.shape[1] // n_points
        return {"contract": self.shape, "interp": (n_out * n_points, n_in), "adjoint": (n_in * n_points, n_out)}[kind]

    def coo(self, kind, n_points):
        """``(rows, cols, values)`` of form ``kind``: int64 rows and columns in CSR order."""
        indptr, indices, values = self.csr(kind, n_points)
        rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
        return rows, indices.astype(np.int64, copy=False), values

    def csr(self, kind, n_points):
        """``(indptr, indices, values)`` of form ``kind`` (see the module docstring) for P = ``n_points``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if self.shape[1] % n_points:
            raise ValueError(f"n_points={n_points} does not divide the operator's {self.shape[1]} columns")
        if kind == "contract" or (kind == "interp" and n_points == 1):
            return self._contract
        # Both forms reorder the entries stably by (new row, new column): CSR <-> CSC conversions
        # are counting sorts in scipy's C code (~20x faster than a lexsort at nside 256).
        indptr, indices, values = self._contract
        if kind == "adjoint":  # (n, m * P + p) -> (m * P + p, n): A's CSC is A^T's CSR
            at = sp.csr_matrix((values, indices, indptr), shape=self.shape).tocsc()
            return at.indptr.astype(np.int64), at.indices.astype(self.index_dtype), at.data
        # (n, m * P + p) -> (n * P + p, m): renumber the columns p * N_in + m, sort each row's
        # columns (two stable transposes), then split every row n into its P rows n * P + p.
        n_out, n_in = self.shape[0], self.shape[1] // n_points
        cols = indices.astype(np.int64)
        tap_major = (cols % n_points) * n_in + cols // n_points
        a = sp.csr_matrix((values, tap_major, indptr), shape=self.shape).tocsc().tocsr()
        rows = np.repeat(np.arange(n_out, dtype=np.int64) * n_points, np.diff(a.indptr)) + a.indices // n_in
        new_indptr = np.zeros(n_out * n_points + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_out * n_points), out=new_indptr[1:])
        return new_indptr, (a.indices % n_in).astype(self.index_dtype), a.data

    def ell(self, kind, n_points):
        """Padded rows ``(cols, vals)`` of form ``kind``, each of shape (rows, m), m the most
        non-zeros of a row (at least 1); padding has column 0 and weight 0, so a product
        ``sum_k vals[:, k] * x[cols[:, k]]`` needs no mask."""
        indptr, indices, values = self.csr(kind, n_points)
        counts = np.diff(indptr)
        n_rows, width = len(counts), max(int(counts.max(initial=0)), 1)
        slot = np.arange(len(indices)) - np.repeat(indptr[:-1], counts)
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
        cols = np.zeros((n_rows, width), dtype=self.index_dtype)
        vals = np.zeros((n_rows, width), dtype=self.value_dtype)
        cols[rows, slot] = indices
        vals[rows, slot] = values
        return cols, vals

    def dense(self, kind="contract", n_points=1):
        """Form ``kind`` as a dense float64 array (tests and small operators only)."""
        rows, cols, values = self.coo(kind, n_points)
        out = np.zeros(self.form_shape(kind, n_points))
        np.add.at(out, (rows, cols), values)
        return out
