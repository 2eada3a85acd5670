"""Cross-backend consistency: conv / down / up give the NumPy float64 numbers in every backend and dtype.

The NumPy float64 path is the reference; it is itself checked against a brute-force evaluation of
the stencil tables. Gradients of a conv -> down(max) -> up pipeline agree between torch and
TensorFlow and with a NumPy finite-difference check.
"""

import re

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from conftest import BACKENDS, TOLERANCE, assert_close, to_numpy

FULL_NSIDE = 8
DISC_NSIDE = 16


def _domain(kind):
    """(nside, cell_ids) of a full-sky or a shuffled regional (disc) domain."""
    if kind == "full":
        return FULL_NSIDE, None
    vec = hp.ang2vec(np.radians(60.0), np.radians(30.0))
    ids = hp.query_disc(DISC_NSIDE, vec, np.radians(25.0), nest=True).astype(np.int64)
    ids = np.random.default_rng(7).permutation(ids)
    return DISC_NSIDE, ids


def _n_cells(nside, ids):
    return 12 * nside * nside if ids is None else ids.size


def _native(backend_name, a, dtype):
    return fc.get_backend(backend_name).asarray(np.asarray(a, dtype=dtype))


def _brute_force_conv(st, x, w):
    """y[b, g*Co+o, n] = sum_{c,p,k} w_g[c,o,p] * weight[g,n,p,k] * x[b,c,index[g,n,p,k]] (float64)."""
    outs = []
    for g in range(st.n_gauges):
        wg = w[g] if w.ndim == 4 else w
        gathered = x[:, :, st.index[g]]  # (B, C, N, P, 4)
        interp = np.einsum("bcnpk,npk->bcnp", gathered, st.weight[g])
        outs.append(np.einsum("bcnp,cop->bon", interp, wg))
    return np.concatenate(outs, axis=1)


# --------------------------------------------------------------------------------------------
# conv
# --------------------------------------------------------------------------------------------

GAUGE_LAYOUTS = [(1, "shared"), (2, "shared"), (2, "per_gauge")]


@pytest.mark.parametrize("kind", ["full", "disc"])
@pytest.mark.parametrize("kernel_sz", [1, 3, 5])
@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("n_gauges,layout", GAUGE_LAYOUTS)
def test_conv_matches_numpy_float64(backend_name, dtype, kind, kernel_sz, gauge_type, n_gauges, layout):
    nside, ids = _domain(kind)
    n = _n_cells(nside, ids)
    rng = np.random.default_rng(kernel_sz * 100 + n_gauges)
    c_in, c_out, batch = 2, 3, 2
    x = rng.normal(size=(batch, c_in, n))
    shape_w = (c_in, c_out, kernel_sz**2) if layout == "shared" else (n_gauges, c_in, c_out, kernel_sz**2)
    w = rng.normal(size=shape_w)

    ref_st = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=n_gauges,
                                 backend="numpy", dtype="float64")
    ref = ref_st.conv(x, w)
    assert ref.shape == (batch, n_gauges * c_out, n)

    st = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=n_gauges,
                             backend=backend_name, dtype=dtype)
    out = st.conv(_native(backend_name, x, dtype), _native(backend_name, w, dtype))
    assert fc.get_backend(backend_name).is_native(out)
    assert fc.get_backend(backend_name).dtype_name(out) == dtype
    assert_close(out, ref, dtype)
    # NumPy input (not a native tensor) is converted and gives the same numbers.
    assert_close(st.conv(x.astype(dtype), w.astype(dtype)), ref, dtype)


@pytest.mark.parametrize("kind", ["full", "disc"])
@pytest.mark.parametrize("kernel_sz", [1, 3, 5])
@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("n_gauges,layout", GAUGE_LAYOUTS)
def test_numpy_reference_matches_brute_force(kind, kernel_sz, gauge_type, n_gauges, layout, rng):
    nside, ids = _domain(kind)
    n = _n_cells(nside, ids)
    x = rng.normal(size=(2, 2, n))
    shape_w = (2, 3, kernel_sz**2) if layout == "shared" else (n_gauges, 2, 3, kernel_sz**2)
    w = rng.normal(size=shape_w)
    st = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=n_gauges,
                             backend="numpy", dtype="float64")
    assert st.index.shape == st.weight.shape == (n_gauges, n, kernel_sz**2, 4)
    np.testing.assert_allclose(st.weight.sum(axis=-1), 1.0, atol=1e-12)
    assert st.index.min() >= 0 and st.index.max() < n
    assert_close(st.conv(x, w), _brute_force_conv(st, x, w), "float64")


@pytest.mark.parametrize("kind", ["full", "disc"])
def test_gauge_layouts_and_channel_order(backend_name, dtype, kind, rng):
    """Per-gauge weights equal to the shared ones give the shared result; channels are gauge-major
    and gauge 0 of G gauges is the single-gauge convolution."""
    nside, ids = _domain(kind)
    n = _n_cells(nside, ids)
    x = rng.normal(size=(1, 2, n)).astype(dtype)
    w = rng.normal(size=(2, 3, 9)).astype(dtype)
    st1 = fc.SphericalStencil(nside, 3, cell_ids=ids, n_gauges=1, backend=backend_name, dtype=dtype)
    st2 = fc.SphericalStencil(nside, 3, cell_ids=ids, n_gauges=2, backend=backend_name, dtype=dtype)
    shared = to_numpy(st2.conv(x, w))
    per_gauge = to_numpy(st2.conv(x, np.stack([w, w])))
    assert_close(per_gauge, shared.astype(np.float64), dtype)
    assert_close(shared[:, :3], to_numpy(st1.conv(x, w)).astype(np.float64), dtype)
    # A per-gauge kernel stack with a zero kernel for gauge 1 leaves only gauge 0's channels.
    zero = to_numpy(st2.conv(x, np.stack([w, np.zeros_like(w)])))
    assert_close(zero[:, 3:], np.zeros_like(zero[:, 3:], dtype=np.float64), dtype)


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
def test_quarter_turn_gauge_equals_rotated_kernel(gauge_type, rng):
    """Gauge 1 of G=2 is the frame turned by pi/2: its point (u, v) is gauge 0's point (-v, u), so a
    kernel applied in gauge 1 equals the kernel rotated a quarter turn applied in gauge 0."""
    nside, k = FULL_NSIDE, 3
    x = rng.normal(size=(1, 1, 12 * nside**2))
    w = rng.normal(size=(1, 1, k * k))
    st = fc.SphericalStencil(nside, k, gauge_type=gauge_type, n_gauges=2, backend="numpy", dtype="float64")
    y = st.conv(x, w)
    # w_rot at gauge-0 point (u', v') = (-v, u) is w at (u, v) = (v', -u').
    # Tap p = i*K + j has (u, v) = (j - h, h - i).
    h = k // 2
    w_img = w.reshape(k, k)
    w_rot = np.empty_like(w_img)
    for i in range(k):
        for j in range(k):
            u2, v2 = j - h, h - i
            u, v = v2, -u2
            w_rot[i, j] = w_img[h - v, u + h]
    y0 = st.conv(x, np.stack([w_rot.reshape(1, 1, -1), np.zeros_like(w)]))
    np.testing.assert_allclose(y[:, 1], y0[:, 0], rtol=0, atol=1e-8)


# --------------------------------------------------------------------------------------------
# down / up
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["full", "disc", "quads"])
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_down_matches_numpy_float64(backend_name, dtype, kind, mode, rng):
    if kind == "quads":  # regional, every parent's 4 children together and in order (reshape path)
        nside = DISC_NSIDE
        parents = np.sort(rng.choice(3 * nside * nside, size=40, replace=False))
        ids = (parents[:, None] * 4 + np.arange(4)).reshape(-1)
    else:
        nside, ids = _domain(kind)
    n = _n_cells(nside, ids)
    x = rng.normal(size=(2, 3, n))
    ref, ref_ids = fc.down(x, nside, cell_ids=ids, mode=mode, backend="numpy")
    expected_ids = np.arange(3 * nside * nside) if ids is None else np.unique(ids // 4)
    np.testing.assert_array_equal(ref_ids, expected_ids)

    # Brute force of the reference: max / mean over the children present.
    all_ids = np.arange(n) if ids is None else ids
    brute = np.empty(ref.shape)
    for j, p in enumerate(ref_ids):
        vals = x[..., all_ids // 4 == p]
        brute[..., j] = vals.max(axis=-1) if mode == "max" else vals.mean(axis=-1)
    assert_close(ref, brute, "float64")

    y, parent_ids = fc.down(_native(backend_name, x, dtype), nside, cell_ids=ids, mode=mode, backend=backend_name)
    np.testing.assert_array_equal(np.asarray(parent_ids), ref_ids)
    assert fc.get_backend(backend_name).is_native(y)
    assert fc.get_backend(backend_name).dtype_name(y) == dtype
    assert_close(y, ref, dtype)
    # The backend is taken from a native tensor when backend= is not given.
    if backend_name != "numpy":
        y2, _ = fc.down(_native(backend_name, x, dtype), nside, cell_ids=ids, mode=mode)
        assert fc.get_backend(backend_name).is_native(y2)
        assert_close(y2, ref, dtype)


@pytest.mark.parametrize("kind", ["full", "disc"])
@pytest.mark.parametrize("targets", ["children", "given"])
def test_up_matches_numpy_float64(backend_name, dtype, kind, targets, rng):
    fine_nside, fine_ids = _domain(kind)
    nside = fine_nside // 2
    coarse_ids = None if fine_ids is None else rng.permutation(np.unique(fine_ids // 4))
    n_coarse = _n_cells(nside, coarse_ids)
    x = rng.normal(size=(2, 3, n_coarse))
    target_ids = None
    if targets == "given":
        target_ids = rng.permutation(np.arange(12 * fine_nside**2)) if fine_ids is None else fine_ids
    ref = fc.up(x, nside, cell_ids=coarse_ids, target_ids=target_ids, backend="numpy")

    # Brute force of the reference: each child takes its parent's value.
    coarse_all = np.arange(n_coarse) if coarse_ids is None else coarse_ids
    tgt = (coarse_all[:, None] * 4 + np.arange(4)).reshape(-1) if target_ids is None else target_ids
    pos = {int(c): i for i, c in enumerate(coarse_all)}
    brute = x[..., [pos[int(t) // 4] for t in tgt]]
    assert_close(ref, brute, "float64")

    y = fc.up(_native(backend_name, x, dtype), nside, cell_ids=coarse_ids, target_ids=target_ids,
              backend=backend_name)
    assert fc.get_backend(backend_name).is_native(y)
    assert fc.get_backend(backend_name).dtype_name(y) == dtype
    assert_close(y, ref, dtype)


@pytest.mark.parametrize("kind", ["full", "disc"])
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_down_of_integer_map(backend_name, kind, mode):
    """An integer map is either rejected with a TypeError/ValueError naming x, or reduced to the right
    numbers (a mean of integers is not truncated; float32 precision at least)."""
    nside, ids = _domain(kind)
    n = _n_cells(nside, ids)
    x = np.arange(2 * n, dtype=np.int64).reshape(2, n)
    ref, _ = fc.down(x.astype(np.float64), nside, cell_ids=ids, mode=mode, backend="numpy")
    try:
        y, _ = fc.down(fc.get_backend(backend_name).asarray(x), nside, cell_ids=ids, mode=mode,
                       backend=backend_name)
    except (TypeError, ValueError) as err:
        assert re.search(r"\bx\b", str(err)), str(err)
    else:
        assert_close(to_numpy(y).astype(np.float64), ref, "float32")


def test_numpy_input_of_the_other_float_dtype_is_handled_alike_in_every_backend():
    """The same NumPy input given to stencils of every backend is either accepted by all (same
    numbers) or rejected by all with a TypeError naming x."""
    rng = np.random.default_rng(4)
    for stencil_dtype, input_dtype in (("float32", "float64"), ("float64", "float32")):
        x = rng.normal(size=(1, 2, 12 * FULL_NSIDE**2)).astype(input_dtype)
        w = rng.normal(size=(2, 2, 9)).astype(stencil_dtype)
        outcomes = {}
        for name in BACKENDS:
            st = fc.SphericalStencil(FULL_NSIDE, 3, backend=name, dtype=stencil_dtype)
            try:
                outcomes[name] = ("ok", to_numpy(st.conv(x, w)))
            except TypeError as err:
                assert re.search(r"\bx\b", str(err)), str(err)
                outcomes[name] = ("TypeError", None)
        kinds = {name: out[0] for name, out in outcomes.items()}
        assert len(set(kinds.values())) == 1, f"stencil {stencil_dtype}, input {input_dtype}: {kinds}"


def test_aliases_are_the_same_ops():
    assert fc.ud_grade_2 is fc.down
    assert fc.up_grade is fc.up
    assert fc.SphericalStencil.Convol_torch is fc.SphericalStencil.conv


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------

def _pipeline(kind, backend_name, dtype, layout="shared"):
    """A scalar loss L(x, w) = sum(up(down(conv(x, w) * m1, max)) * m2) on one backend."""
    nside, ids = _domain(kind)
    n = _n_cells(nside, ids)
    rng = np.random.default_rng(99)
    m1 = rng.normal(size=(2, 4, n)).astype(dtype)
    m2 = rng.normal(size=(2, 4, n)).astype(dtype)
    bk = fc.get_backend(backend_name)
    st = fc.SphericalStencil(nside, 3, cell_ids=ids, gauge_type="cosmo", n_gauges=2, backend=bk, dtype=dtype)
    m1n, m2n = bk.asarray(m1), bk.asarray(m2)

    def loss(x, w):
        y = st.conv(x, w) * m1n
        z, parent_ids = fc.down(y, nside, cell_ids=ids, mode="max", backend=bk)
        u = fc.up(z, nside // 2, cell_ids=parent_ids, target_ids=ids, backend=bk)
        return bk.xp.sum(u * m2n)

    data_rng = np.random.default_rng(5)
    x = data_rng.normal(size=(2, 3, n)).astype(dtype)
    w = data_rng.normal(size=(3, 2, 9) if layout == "shared" else (2, 3, 2, 9)).astype(dtype)
    return bk, loss, x, w


def _grads(kind, backend_name, dtype, layout="shared"):
    bk, loss, x, w = _pipeline(kind, backend_name, dtype, layout)
    xn, wn = bk.asarray(x), bk.asarray(w)
    value, gx = bk.value_and_grad(lambda v: loss(v, wn), xn)
    value_w, gw = bk.value_and_grad(lambda v: loss(xn, v), wn)
    assert gx.shape == xn.shape and gw.shape == wn.shape
    return float(to_numpy(value)), float(to_numpy(value_w)), to_numpy(gx), to_numpy(gw)


@pytest.mark.skipif(not {"torch", "tensorflow"} <= set(BACKENDS), reason="needs torch and tensorflow")
@pytest.mark.parametrize("kind", ["full", "disc"])
@pytest.mark.parametrize("layout", ["shared", "per_gauge"])
def test_gradients_agree_between_torch_and_tensorflow(kind, layout):
    t_val, t_val_w, t_gx, t_gw = _grads(kind, "torch", "float64", layout)
    f_val, f_val_w, f_gx, f_gw = _grads(kind, "tensorflow", "float64", layout)
    _, np_loss, x, w = _pipeline(kind, "numpy", "float64", layout)
    ref_val = float(np_loss(x, w))
    for val in (t_val, t_val_w, f_val, f_val_w):
        assert abs(val - ref_val) <= TOLERANCE["float64"] * max(1.0, abs(ref_val))
    assert np.abs(t_gx).max() > 0 and np.abs(t_gw).max() > 0
    assert_close(f_gx, t_gx, "float64")
    assert_close(f_gw, t_gw, "float64")


@pytest.mark.parametrize("kind", ["full", "disc"])
@pytest.mark.parametrize("layout", ["shared", "per_gauge"])
def test_gradients_match_finite_differences(autograd_backend, kind, layout):
    _, _, gx, gw = _grads(kind, autograd_backend, "float64", layout)
    _, np_loss, x, w = _pipeline(kind, "numpy", "float64", layout)
    eps = 1e-6
    rng = np.random.default_rng(3)

    def central(arr, idx, fn):
        plus, minus = arr.copy(), arr.copy()
        plus[idx] += eps
        minus[idx] -= eps
        return (float(fn(plus)) - float(fn(minus))) / (2 * eps)

    # A few entries of x, the entries with the largest gradient among them, and a few of w.
    flat = rng.choice(x.size, size=6, replace=False).tolist() + [int(np.argmax(np.abs(gx)))]
    for f in flat:
        idx = np.unravel_index(f, x.shape)
        fd = central(x, idx, lambda v: np_loss(v, w))
        assert abs(fd - gx[idx]) <= 1e-6 * max(1.0, abs(fd)), (idx, fd, gx[idx])
    for f in rng.choice(w.size, size=6, replace=False):
        idx = np.unravel_index(int(f), w.shape)
        fd = central(w, idx, lambda v: np_loss(x, v))
        assert abs(fd - gw[idx]) <= 1e-6 * max(1.0, abs(fd)), (idx, fd, gw[idx])


@pytest.mark.parametrize("kind", ["full", "disc"])
def test_float32_gradients_close_to_float64(autograd_backend, kind):
    _, _, gx32, gw32 = _grads(kind, autograd_backend, "float32")
    _, _, gx64, gw64 = _grads(kind, autograd_backend, "float64")
    assert gx32.dtype == np.float32 and gw32.dtype == np.float32
    for a, b in ((gx32, gx64), (gw32, gw64)):
        err = np.abs(a.astype(np.float64) - b).max() / max(1.0, np.abs(b).max())
        assert err <= 1e-4, err


# --------------------------------------------------------------------------------------------
# tf.function
# --------------------------------------------------------------------------------------------

def _tf_case(kind, dtype_):
    nside, ids = _domain(kind)
    n = _n_cells(nside, ids)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 2, n))
    w = rng.normal(size=(2, 2, 3, 9))
    ref_st = fc.SphericalStencil(nside, 3, cell_ids=ids, n_gauges=2, backend="numpy", dtype="float64")
    ref = ref_st.conv(x, w)
    st = fc.SphericalStencil(nside, 3, cell_ids=ids, n_gauges=2, backend="tensorflow", dtype=dtype_)
    return nside, ids, n, x, w, ref, st


@pytest.mark.skipif("tensorflow" not in BACKENDS, reason="needs tensorflow")
@pytest.mark.parametrize("kind", ["full", "disc"])
@pytest.mark.parametrize("dtype_", ["float32", "float64"])
def test_conv_down_up_inside_tf_function(kind, dtype_):
    """Stencil used eagerly once, then inside several tf.functions (fixed and unknown batch)."""
    import tensorflow as tf

    nside, ids, n, x, w, ref, st = _tf_case(kind, dtype_)
    ref_down, parent_ids = fc.down(ref, nside, cell_ids=ids, mode="max", backend="numpy")
    ref_up = fc.up(ref_down, nside // 2, cell_ids=parent_ids, target_ids=ids, backend="numpy")
    tf_dtype = getattr(tf, dtype_)
    wv = tf.Variable(w.astype(dtype_))
    xt = tf.constant(x.astype(dtype_))

    with tf.GradientTape() as tape:
        eager_loss = tf.reduce_sum(st.conv(xt, wv) ** 2)
    eager_grad = tape.gradient(eager_loss, wv)

    @tf.function
    def conv_fixed(xx):
        return st.conv(xx, wv)

    @tf.function(input_signature=[tf.TensorSpec([None, 2, n], tf_dtype)])
    def pipeline(xx):
        y = st.conv(xx, wv)
        z, pid = fc.down(y, nside, cell_ids=ids, mode="max", backend="tensorflow")
        return y, fc.up(z, nside // 2, cell_ids=pid, target_ids=ids, backend="tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([None, 2, n], tf_dtype)])
    def grad_w(xx):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(st.conv(xx, wv) ** 2)
        return tape.gradient(loss, wv)

    assert_close(conv_fixed(xt), ref, dtype_)
    assert_close(conv_fixed(xt[:2]), ref[:2], dtype_)  # retrace for a new shape
    y, u = pipeline(xt)
    assert_close(y, ref, dtype_)
    assert_close(u, ref_up, dtype_)
    y1, _ = pipeline(xt[:1])  # same trace, another batch size
    assert_close(y1, ref[:1], dtype_)
    g = grad_w(xt)
    scale = max(1.0, float(np.abs(eager_grad.numpy()).max()))
    assert float(np.abs(g.numpy().astype(np.float64) - eager_grad.numpy()).max()) / scale <= TOLERANCE[dtype_]
    assert_close(st.conv(xt, wv), ref, dtype_)  # still fine eagerly afterwards


@pytest.mark.skipif("tensorflow" not in BACKENDS, reason="needs tensorflow")
@pytest.mark.parametrize("kind", ["full", "disc"])
def test_stencil_first_used_inside_tf_function(kind):
    """A fresh stencil whose first conv happens inside a tf.function trace must still work eagerly
    afterwards and in a retrace / another tf.function (its cached operators must not be graph
    tensors of the first trace)."""
    import tensorflow as tf

    nside, ids, n, x, w, ref, st = _tf_case(kind, "float64")
    wt = tf.constant(w)
    xt = tf.constant(x)

    @tf.function
    def conv_a(xx):
        return st.conv(xx, wt)

    @tf.function
    def conv_b(xx):
        return st.conv(xx, wt)

    assert_close(conv_a(xt), ref, "float64")
    assert_close(conv_a(xt[:1]), ref[:1], "float64")  # retrace
    assert_close(conv_b(xt), ref, "float64")  # another function
    assert_close(st.conv(xt, wt), ref, "float64")  # eager
