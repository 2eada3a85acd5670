"""The host forms of the stencil operator (made once in ``backends/sparse_forms``) and the backends'
``sparse_matmul``, against dense matrices built entry by entry from the tap tables."""

import numpy as np
import pytest

import foscat_core as fc
from foscat_core.backends import get_backend
from foscat_core.backends.sparse_forms import SparseForms


def _taps(nside=4, kernel_sz=3, cell_ids=None):
    st = fc.SphericalStencil(nside, kernel_sz, cell_ids=cell_ids, dtype="float64")
    return np.asarray(st.index[0]), np.asarray(st.weight[0])


def _dense_from_taps(index, weight):
    """A (N, N * P) with A[n, m * P + p] = sum of the weights of tap p of cell n read at cell m."""
    n, p, k = index.shape
    a = np.zeros((n, n * p))
    for cell in range(n):
        for tap in range(p):
            for j in range(k):
                a[cell, index[cell, tap, j] * p + tap] += weight[cell, tap, j]
    return a


@pytest.mark.parametrize("chunk_cells", [1 << 16, 7])  # one chunk of cells, or many (large maps)
@pytest.mark.parametrize("cell_ids", [None, np.arange(40, 90)])
def test_every_form_is_the_dense_operator_rearranged(cell_ids, chunk_cells, monkeypatch):
    from foscat_core.backends import sparse_forms

    monkeypatch.setattr(sparse_forms, "_CHUNK_CELLS", chunk_cells)
    index, weight = _taps(cell_ids=cell_ids)
    n, p = index.shape[:2]
    a = _dense_from_taps(index, weight)
    forms = SparseForms.from_taps(index, weight, "float64")
    np.testing.assert_allclose(forms.dense("contract"), a, atol=1e-15)
    # A_i[n * P + p, m] = A[n, m * P + p]
    a_i = a.reshape(n, n, p).transpose(0, 2, 1).reshape(n * p, n)
    np.testing.assert_allclose(forms.dense("interp", p), a_i, atol=1e-15)
    np.testing.assert_allclose(forms.dense("adjoint", p), a.T, atol=1e-15)
    # tap-major interpolation: row p * N + n
    tap_major = SparseForms.from_taps(index, weight, "float64", tap_major=True)
    np.testing.assert_allclose(tap_major.dense(), a_i.reshape(n, p, n).transpose(1, 0, 2).reshape(p * n, n), atol=1e-15)
    # regional borders: zero weights are dropped, not stored
    assert forms.nnz == int(np.count_nonzero(weight))


def test_padded_rows_give_the_same_product():
    index, weight = _taps()
    n, p = index.shape[:2]
    forms = SparseForms.from_taps(index, weight, "float64")
    x = np.random.default_rng(0).normal(size=(n, 3))
    cols, vals = forms.ell("interp", p)
    assert cols.shape == vals.shape and cols.shape[0] == n * p and cols.dtype == np.int32
    got = np.einsum("rk,rkc->rc", vals, x[cols])
    np.testing.assert_allclose(got, forms.dense("interp", p) @ x, atol=1e-13)


def test_bad_tables_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="indptr must have shape"):
        SparseForms(np.zeros(3, np.int64), np.zeros(0), np.zeros(0), (3, 3), "float32")
    with pytest.raises(ValueError, match="indices and data must have shape"):
        SparseForms(np.array([0, 1]), np.zeros(2, np.int64), np.zeros(2), (1, 3), "float32")
    with pytest.raises(ValueError, match="kind must be one of"):
        SparseForms(np.array([0, 0]), np.zeros(0, np.int64), np.zeros(0), (1, 3), "float32").csr("transpose", 1)


def test_sparse_matmul_matches_the_dense_product(backend_name, dtype):
    bk = get_backend(backend_name)
    index, weight = _taps(cell_ids=np.arange(20, 120))
    forms = SparseForms.from_taps(index, weight, dtype, tap_major=True)
    op = bk.sparse_operator(forms, dtype)
    x = np.random.default_rng(1).normal(size=(forms.shape[1], 5))
    got = bk.to_numpy(bk.sparse_matmul(op, bk.asarray(x, dtype=dtype)))
    np.testing.assert_allclose(got, forms.dense() @ x, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5 if dtype == "float32" else 1e-12)


def test_sparse_matmul_gradient_is_the_adjoint_product(autograd_backend):
    bk = get_backend(autograd_backend)
    index, weight = _taps()
    forms = SparseForms.from_taps(index, weight, "float64", tap_major=True)
    op = bk.sparse_operator(forms, "float64")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(forms.shape[1], 4))
    g = rng.normal(size=(forms.shape[0], 4))
    g_native = bk.asarray(g, dtype="float64")
    _, grad = bk.value_and_grad(lambda t: bk.xp.sum(bk.sparse_matmul(op, t) * g_native), bk.asarray(x, dtype="float64"))
    np.testing.assert_allclose(bk.to_numpy(grad), forms.dense().T @ g, atol=1e-12)
