"""NumPy reference backend: array-api-compat's NumPy namespace, SciPy sparse products, no autograd."""

import numpy as np
import scipy.sparse as sp
from array_api_compat import numpy as np_xp

from ..base import Backend


class NumpyBackend(Backend):
    """The reference backend: every other backend is tested against its float64 results."""

    name = "numpy"
    has_autograd = False
    host = True
    xp = np_xp

    def __init__(self, device=None):
        if device not in (None, "cpu"):
            raise ValueError(f"device must be None or 'cpu' for the numpy backend, got {device!r}")
        self.device = "cpu"

    def dtype(self, name):
        return np.dtype(name)

    def dtype_name(self, x):
        return np.asarray(x).dtype.name

    def is_native(self, x):
        return isinstance(x, np.ndarray)

    def asarray(self, x, dtype=None):
        return np.asarray(x, dtype=None if dtype is None else np.dtype(dtype))

    def to_numpy(self, x):
        return np.array(x, copy=True)

    def sparse_operator(self, forms, dtype):
        indptr, indices, data = forms.csr("contract", 1)
        return sp.csr_matrix((np.asarray(data, dtype=dtype), indices, indptr), shape=forms.shape)

    def sparse_matmul(self, op, x):
        return np.asarray(op @ x)

    def stencil_contract(self, xt, wr, op):
        n_points = op.shape[1] // xt.shape[1]
        c_out = wr.shape[1] // n_points
        out = np.empty((xt.shape[0], op.shape[0], c_out), dtype=np.result_type(xt, wr))
        for b in range(xt.shape[0]):
            out[b] = op @ (xt[b] @ wr).reshape(-1, c_out)
        return out
