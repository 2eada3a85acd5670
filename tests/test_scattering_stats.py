"""Scattering statistics object (arithmetic, reductions, files), gradients, norms and bad input."""

import healpy as hp
import numpy as np
import pytest

from conftest import to_numpy
from foscat_core.scattering import BackendCompat, ScatteringStatistics, funct

NSIDE = 4
NPIX = 12 * NSIDE**2
_OPS = {}


def get_op(backend):
    if backend not in _OPS:
        _OPS[backend] = funct(KERNELSZ=3, NORIENT=2, backend=backend)
    return _OPS[backend]


def two_stats(backend, cross=False):
    rng = np.random.default_rng(11)
    op = get_op(backend)
    x1, x2 = rng.normal(size=(2, NPIX)), rng.normal(size=(2, NPIX))
    if cross:
        return op.eval(x1, x2), op.eval(x2, x1 + 1.0)
    return op.eval(x1, norm="self"), op.eval(x2, norm="self")  # one norm: statistics of two norms do not mix


@pytest.mark.parametrize("cross", [False, True])
def test_arithmetic_matches_numpy(backend_name, cross):
    a, b = two_stats(backend_name, cross)
    na, nb = a.numpy(), b.numpy()
    checks = {
        "add": (a + b, {k: na[k] + nb[k] for k in na}),
        "sub": (a - b, {k: na[k] - nb[k] for k in na}),
        "mul": (a * b, {k: na[k] * nb[k] for k in na}),
        "div": (a / b, {k: na[k] / nb[k] for k in na}),
        "scalar": (2.0 * a - 1.0, {k: 2.0 * na[k] - 1.0 for k in na}),
        "rdiv": (1.0 / b, {k: 1.0 / nb[k] for k in nb}),
        "neg": (-a + 3, {k: 3 - na[k] for k in na}),
        "square": ((a - b) ** 2, {k: np.abs(na[k] - nb[k]) ** 2 for k in na}),
        "pow": ((b * b) ** 0.5, {k: np.abs(nb[k]) for k in nb}),
        "abs": (b.abs(), {k: np.abs(nb[k]) for k in nb}),
    }
    for label, (got, want) in checks.items():
        g = got.numpy()
        for k in want:
            assert np.allclose(g[k], want[k], rtol=1e-12, atol=1e-300, equal_nan=True), (label, k)
    sq = (a - b) ** 2
    assert all(not sq.is_complex(n) for n in sq.names)


def test_reductions_and_flatten(backend_name):
    a, b = two_stats(backend_name)
    flat = to_numpy(a.flatten())
    n = a.numpy()
    expected = np.concatenate([np.stack([v.real, v.imag], -1).ravel() if np.iscomplexobj(v) else v.ravel()
                               for v in n.values()])
    assert flat.ndim == 1 and np.allclose(flat, expected)
    assert np.isclose(float(to_numpy(a.reduce_sum())), expected.sum())
    assert np.isclose(float(to_numpy(a.reduce_mean())), expected.mean())
    loss = a.reduce_mean_batch((a - b) ** 2)
    want = sum(float((np.abs(n[k] - b.numpy()[k]) ** 2).sum()) for k in n) / 2
    assert np.isclose(float(to_numpy(loss)), want)
    assert np.isclose(float(to_numpy(get_op(backend_name).reduce_mean_batch((a - b) ** 2))), want)
    mb = a.mean_batch().numpy()
    assert all(np.allclose(mb[k][0], n[k].mean(axis=0)) for k in n)
    sd = a.std_batch().numpy()
    assert np.allclose(sd["S1"][0], n["S1"].std(axis=0))
    assert np.allclose(sd["S4"][0], np.sqrt((np.abs(n["S4"] - n["S4"].mean(0)) ** 2).mean(0)))


def test_mismatched_statistics_refused():
    a, _ = two_stats("numpy")
    c, _ = two_stats("numpy", cross=True)
    with pytest.raises(ValueError, match="different coefficients"):
        a - c
    with pytest.raises(TypeError):
        a + "x"


@pytest.mark.parametrize("cross", [False, True])
def test_save_load_round_trip(backend_name, tmp_path, cross):
    a, _ = two_stats(backend_name, cross)
    path = tmp_path / "stat.npz"
    a.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["stat.npz"]  # no temporary left behind
    for target in ("numpy", backend_name):
        b = ScatteringStatistics.load(path, backend=target)
        assert b.backend.name == target and b.names == a.names and b.cross == a.cross
        assert np.array_equal(b.j1_j2_j3, a.j1_j2_j3)
        na, nb = a.numpy(), b.numpy()
        assert all(np.array_equal(na[k], nb[k]) for k in na)
    bad = tmp_path / "other.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match="path"):
        ScatteringStatistics.load(bad)


def test_gradients_torch_tensorflow_and_finite_differences():
    rng = np.random.default_rng(12)
    x0 = rng.normal(size=(2, NPIX))
    target = rng.normal(size=(2, NPIX)) * 1.5
    mask = rng.uniform(size=(2, NPIX))

    def loss_of(backend):
        op = get_op(backend)
        ref = op.eval(target, mask=mask, norm="self")

        def loss(u):
            st = op.eval(u, mask=mask, norm="self")
            return st.reduce_mean_batch((st - ref) ** 2)

        return op, loss

    grads = {}
    for backend in ("torch", "tensorflow"):
        op, loss = loss_of(backend)
        value, grad = op.backend.value_and_grad(loss, op.backend.asarray(x0, dtype="float64"))
        grads[backend] = to_numpy(grad)
        assert np.isfinite(grads[backend]).all()
    scale = np.abs(grads["torch"]).max()
    assert np.abs(grads["torch"] - grads["tensorflow"]).max() <= 1e-10 * scale
    _, np_loss = loss_of("numpy")
    h = 1e-6
    for b, cell in [(0, 0), (0, 100), (1, 191), (1, 37)]:
        xp_, xm = x0.copy(), x0.copy()
        xp_[b, cell] += h
        xm[b, cell] -= h
        fd = (float(np_loss(xp_)) - float(np_loss(xm))) / (2 * h)
        assert np.isclose(fd, grads["torch"][b, cell], rtol=1e-5, atol=1e-8 * scale), (b, cell)


def test_gradient_cross_and_region(autograd_backend):
    """A regional cross-statistics loss is differentiable in both maps' first argument."""
    ids = hp.query_disc(NSIDE, hp.ang2vec(1.0, 2.0), np.radians(60), nest=True)
    rng = np.random.default_rng(13)
    op = get_op(autograd_backend)
    y = rng.normal(size=ids.size)
    ref = op.eval(rng.normal(size=ids.size), y, cell_ids=ids, nside=NSIDE)

    def loss(u):
        st = op.eval(u, y, cell_ids=ids, nside=NSIDE)
        return st.reduce_mean_batch((st - ref) ** 2)

    value, grad = op.backend.value_and_grad(loss, op.backend.asarray(rng.normal(size=ids.size), dtype="float64"))
    assert np.isfinite(to_numpy(grad)).all() and np.abs(to_numpy(grad)).max() > 0


def test_norm_auto_stores_the_first_reference():
    op = funct(KERNELSZ=3, NORIENT=2, backend="numpy")
    rng = np.random.default_rng(14)
    x1, x2 = rng.normal(size=NPIX), 3.0 * rng.normal(size=NPIX)
    first = op.eval(x1, norm="auto").numpy()
    assert np.allclose(first["S4"], op.eval(x1, norm="self").numpy()["S4"])
    raw, s2_ref = op.eval(x2), op.eval(x1)
    second = op.eval(x2, norm="auto")
    s2 = s2_ref.numpy()["S2"][0, 0]
    j = second.j1_j2_j3
    expected = raw.numpy()["S4"][0, 0] / np.sqrt(s2[j[:, 0]][:, :, None, None] * s2[j[:, 1]][:, None, :, None])
    assert np.allclose(second.numpy()["S4"][0, 0], expected)
    op.clean_norm()
    assert np.allclose(op.eval(x2, norm="auto").numpy()["S4"], op.eval(x2, norm="self").numpy()["S4"])
    with pytest.raises(ValueError, match="norm='auto'"):
        op.eval(np.ones(12 * 2**2), norm="auto")


def test_bad_input_names_the_argument():
    op = get_op("numpy")
    x = np.ones(NPIX)
    with pytest.raises(ValueError, match="x"):
        op.eval(np.ones(100))
    with pytest.raises(ValueError, match="x"):
        op.eval(np.ones((2, 2, NPIX)))
    with pytest.raises(ValueError, match="x"):
        op.eval(x, nside=8)
    with pytest.raises(ValueError, match="norm"):
        op.eval(x, norm="max")
    with pytest.raises(ValueError, match="mask"):
        op.eval(x, mask=np.ones((2, NPIX + 1)))
    with pytest.raises(ValueError, match="mask"):
        op.eval(x, mask=-np.ones(NPIX))
    with pytest.raises(ValueError, match="mask"):
        op.eval(x, mask=np.zeros((1, NPIX)))
    with pytest.raises(ValueError, match="y"):
        op.eval(x, y=np.ones(NPIX - 1))
    with pytest.raises(ValueError, match="nside"):
        op.eval(x[:10], cell_ids=np.arange(10))
    with pytest.raises(ValueError, match="cell_ids"):
        op.eval(x[:10], cell_ids=np.arange(11), nside=4)
    with pytest.raises(ValueError, match="Jmax"):
        op.eval(x, Jmax=0)
    with pytest.raises(ValueError, match="NORIENT"):
        funct(NORIENT=0)
    with pytest.raises(ValueError, match="LAMBDA"):
        funct(LAMBDA=-1.0)
    with pytest.raises(ValueError, match="all_type"):
        funct(all_type="int8")


def test_backend_compat_helpers(backend_name):
    op = get_op(backend_name)
    bk = op.backend
    assert isinstance(bk, BackendCompat) and bk.name == backend_name
    v = bk.bk_cast(np.array([[1.0, -2.0], [3.0, -4.0]]))
    assert bk.dtype_name(v) == "float64"
    assert np.isclose(float(to_numpy(bk.bk_mean(v))), -0.5)
    assert np.allclose(to_numpy(bk.bk_sum(v, axis=0)), [4.0, -6.0])
    assert np.allclose(to_numpy(bk.bk_sqrt(bk.bk_square(bk.bk_abs(v)))), np.abs(to_numpy(v)))
    assert tuple(bk.bk_reshape(v, (4,)).shape) == (4,)
    # the wrapper is accepted wherever a backend is
    assert funct(KERNELSZ=3, NORIENT=2, backend=bk).backend.name == backend_name
    st = op.eval(np.ones(NPIX))
    assert st.backend.name == backend_name and hasattr(st.backend, "bk_mean")


def test_host_reference_joins_framework_statistics(autograd_backend):
    rng = np.random.default_rng(17)
    ref = get_op("numpy").eval(rng.normal(size=NPIX))
    op = get_op(autograd_backend)
    x = op.backend.asarray(rng.normal(size=NPIX), dtype="float64")

    def loss(u):
        st = op.eval(u)
        return st.reduce_mean_batch((st - ref) ** 2) + st.reduce_mean_batch((ref - st) ** 2)

    value, grad = op.backend.value_and_grad(loss, x)
    st = op.eval(x)
    want = 2 * sum(float((np.abs(st.numpy()[k] - ref.numpy()[k]) ** 2).sum()) for k in ref.names)
    assert np.isclose(float(to_numpy(value)), want)
    assert np.isfinite(to_numpy(grad)).all()
    assert ref.to_backend(autograd_backend).backend.name == autograd_backend


def test_float64_host_reference_joins_float32_statistics_alike(autograd_backend):
    """A NumPy (float64) reference combined with a float32 operator's statistics takes float32,
    on every backend (the README's loss with a host reference)."""
    x = np.random.default_rng(2).normal(size=(2, 768))
    ref = funct(KERNELSZ=3, NORIENT=4, backend="numpy").eval(x)
    stats = funct(KERNELSZ=3, NORIENT=4, backend=autograd_backend, all_type="float32").eval(x)
    for combined in (stats - ref, ref - stats):
        assert combined.dtype == "float32" and combined.backend.name == autograd_backend
        value = float(stats.backend.to_numpy(combined.reduce_mean_batch(combined ** 2)))
        assert value < 1e-8
