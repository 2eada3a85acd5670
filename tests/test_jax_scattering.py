"""Scattering statistics, their losses and Synthesis on the JAX backend, against torch.

float64 needs JAX's 64-bit mode: the ``x64`` fixture turns it on and restores the flag after the
test (operators are made inside the test, so no float64 array outlives the mode). nside 4, K = 3.
"""

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("torch")

from foscat_core.scattering import ScatteringStatistics, funct, reduce_distance  # noqa: E402
from foscat_core.synthesis import Loss, Synthesis  # noqa: E402

NSIDE, NPIX = 4, 192
REGION = np.arange(40, 140)  # a regional domain of 100 NESTED cells at nside 4 (x[:, 40:140] below)
TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def operators(dtype):
    return (funct(KERNELSZ=3, NORIENT=4, all_type=dtype, backend="jax"),
            funct(KERNELSZ=3, NORIENT=4, all_type=dtype, backend="torch"))


def assert_stats_close(a, b, tol):
    """Every coefficient within ``tol`` of the other, relative to its largest magnitude."""
    a, b = a.numpy(), b.numpy()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, name
        err = np.max(np.abs(a[name] - b[name])) / np.max(np.abs(b[name]))
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"


def distance_loss(v, scat_op, args):
    return scat_op.reduce_distance(scat_op.eval(v, norm="self"), args[0])


def maps(seed, shape):
    return np.random.default_rng(seed).normal(size=shape)


def compiled_statistics(fn):
    """``fn(v) -> tuple of ScatteringStatistics`` run as one ``jax.jit`` program (eager JAX compiles
    each of the loop's hundreds of operations for every new shape: seconds per shape); returns
    statistics objects holding the compiled results."""
    traced = {}

    def arrays(v):
        traced["stats"] = fn(v)
        return [{n: st[n] for n in st.names} for st in traced["stats"]]

    def build(v):
        out = jax.jit(arrays)(v)
        return [ScatteringStatistics(c, [n for n in st.names if st.is_complex(n)], "jax", st.j2_j3, st.j1_j2_j3,
                                     st.cross, st.norm, st.settings) for c, st in zip(out, traced["stats"])]

    return build


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_statistics_equal_torch(request, dtype):
    if dtype == "float64":
        request.getfixturevalue("x64")
    jx, th = operators(dtype)
    x, y = maps(0, (2, NPIX)), maps(1, (2, NPIX))
    mask = (np.random.default_rng(2).random((2, NPIX)) > 0.3).astype(float)
    cases = [
        lambda op, v: op.eval(v, mask=mask),  # auto, two mask rows
        lambda op, v: op.eval(v, y, norm="self"),  # cross (S3P, complex S2), normalised
        lambda op, v: op.eval(2.0 * v[:, 40:140], cell_ids=REGION, nside=NSIDE, mask=mask[:1, REGION]),  # regional
    ]
    if dtype == "float32":
        cases = cases[:1]  # the float32 path is the same code: one case keeps the test short

    def with_moments(op, v):  # each case, its batch std and the distance in units of it
        out = []
        for case in cases:
            st = case(op, v)
            sd = st.std_batch()
            out += [st, sd, st.mean_batch()]
        return out

    got = compiled_statistics(lambda v: with_moments(jx, v))(jax.numpy.asarray(x.astype(dtype)))
    want = with_moments(th, th.backend.asarray(x, dtype=dtype))
    for a, b in zip(got, want):
        assert a.dtype == dtype and a.backend.name == "jax" and a.settings == dict(b.settings, backend="jax")
        assert_stats_close(a, b, TOL[dtype])
    for st, sd, mean in zip(got[0::3], got[1::3], got[2::3]):  # reduce_distance of compiled statistics
        d = float(jx.reduce_distance(st, mean, sd))
        assert d == pytest.approx(float(((st - mean) ** 2 / sd ** 2).reduce_mean()), rel=TOL[dtype])


def test_gradient_equals_torch_and_finite_difference(x64):
    jx, th = operators("float64")
    x, target = maps(4, NPIX), maps(5, NPIX)
    ref_t = th.eval(target, norm="self")
    ref_j = ref_t.to_backend("jax")
    compiled = jax.jit(jax.value_and_grad(lambda v: distance_loss(v, jx, (ref_j,))))
    value, grad = compiled(jax.numpy.asarray(x))
    bk = th.backend
    t_value, t_grad = bk.value_and_grad(lambda v: distance_loss(v, th, (ref_t,)), bk.asarray(x))
    grad, t_grad = np.asarray(grad), bk.to_numpy(t_grad)
    assert float(value) == pytest.approx(float(bk.to_numpy(t_value)), rel=1e-10)
    assert np.max(np.abs(grad - t_grad)) <= 1e-9 * np.max(np.abs(t_grad))
    # Central difference along a random direction: truncation O(h**2) ~ 1e-10, rounding ~ eps / h.
    d, h = maps(6, NPIX), 1e-4
    fd = (float(compiled(jax.numpy.asarray(x + h * d))[0]) - float(compiled(jax.numpy.asarray(x - h * d))[0])) / (2 * h)
    assert fd == pytest.approx(float(grad @ d), rel=1e-6)


def test_loss_under_jit_equals_eager_and_checks_finite(x64):
    """norm="auto" (its first call must be eager), then the same loss eager and compiled; a NaN map
    fails with the finite check's message, eagerly and from inside the compiled function."""
    jx, th = operators("float64")
    x = maps(7, (2, NPIX))
    ref = th.eval(maps(8, (3, NPIX)), Jmax=2, norm="auto").mean_batch().to_backend("jax")

    def loss(v):
        return jx.reduce_distance(jx.eval(v, Jmax=2, norm="auto"), ref)

    compiled = jax.jit(jax.value_and_grad(loss))
    with pytest.raises(ValueError, match="norm='auto' stores the S2 of its first call"):
        compiled(jax.numpy.asarray(x))
    eager = float(loss(x))  # stores the reference (the S2 of x)
    value, grad = compiled(jax.numpy.asarray(x))
    assert float(value) == pytest.approx(eager, rel=1e-12)
    assert grad.shape == (2, NPIX) and np.all(np.isfinite(np.asarray(grad)))
    # The operator's caches hold no tracer: the compiled function runs again and eager still works.
    value2, _ = compiled(jax.numpy.asarray(x + 0.5))
    assert float(value2) == pytest.approx(float(loss(x + 0.5)), rel=1e-12)
    bad = x.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"x has 1 missing \(NaN or infinite\) cells"):
        loss(bad)
    with pytest.raises(Exception, match=r"x has missing \(NaN or infinite\) cells.*mask="):
        float(compiled(jax.numpy.asarray(bad))[0])


def test_statistics_file_round_trip_and_arithmetic(x64, tmp_path):
    _, th = operators("float64")
    st = th.eval(maps(11, (2, NPIX)), maps(12, (2, NPIX))).to_backend("jax")
    path = tmp_path / "stats.npz"
    st.save(path)
    back = ScatteringStatistics.load(path)
    assert back.backend.name == "jax" and back.dtype == "float64" and back.settings == st.settings
    for name, value in st.numpy().items():
        np.testing.assert_array_equal(back.numpy()[name], value)
    on_torch = ScatteringStatistics.load(path, backend="torch")
    assert float(reduce_distance(st, back)) == 0.0
    assert float(((st - 2 * back) / 3 + 1).reduce_mean()) == pytest.approx(
        float(((on_torch - 2 * on_torch) / 3 + 1).reduce_mean()), rel=1e-12)
    jax.config.update("jax_enable_x64", False)  # the fixture restores it
    with pytest.raises(ValueError, match="float64.*jax_enable_x64"):
        ScatteringStatistics.load(path)


def test_synthesis_on_jax_reaches_torchs_loss(x64):
    """Same start, same 8 L-BFGS-B iterations, both float64. The objectives and gradients agree to
    ~1e-12 (tests above), and so do the paths: measured 2e-15 on the history and the map. 1e-9
    leaves room for another summation order (BLAS, XLA fusion) amplified by eight L-BFGS-B updates,
    while a wrong gradient or objective moves the path by far more (the loss drops 10x here)."""
    jx, th = operators("float64")
    x0, target = maps(13, NPIX), maps(14, NPIX)
    ref = th.eval(target, norm="self")
    histories, outs = [], []
    for op, r in ((jx, ref.to_backend("jax")), (th, ref)):
        synth = Synthesis([Loss(distance_loss, op, r)], verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the compiled (jax.jit) path, no eager fallback
            outs.append(synth.run(x0, NUM_EPOCHS=8, factr=1.0))
        histories.append(synth.get_history())
        assert outs[-1].shape == (NPIX,) and outs[-1].dtype == np.float64
    jax_hist, torch_hist = histories
    assert len(jax_hist) == len(torch_hist) == 9 and jax_hist[-1] < 0.2 * jax_hist[0]
    np.testing.assert_allclose(jax_hist, torch_hist, rtol=1e-9)
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-9)
