"""morphology_distance: the level-line term of a synthesis loss (issue 13, the filament target)."""

import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, BACKENDS, synthesise_on_torch_and_tensorflow, to_numpy
from foscat_core.backends import resolve_backend
from foscat_core.stencils import SphericalStencil
from foscat_core.synthesis import Loss, Synthesis, histogram_distance, morphology_distance
from foscat_core.synthesis.morphology import fit_kernels

NSIDE = 4
N = 12 * NSIDE**2


def squared(n, seed):
    return np.random.default_rng(seed).normal(size=n) ** 2


def hand_distance(x, t, n_bins, features, nside=NSIDE):
    """The docstring's formula, written out with explicit loops over cells."""
    st = SphericalStencil(nside, 3, backend="numpy", dtype="float64")
    eps = 1e-12 * t.var()

    def feats(m):
        d = st.conv(m[None, None, :], fit_kernels())[0]  # (5, N)
        out = {}
        for i in range(m.size):
            gu, gv, huu, hvv, huv = d[:, i]
            g2 = gu * gu + gv * gv
            out.setdefault("gradient", []).append(np.sqrt(g2 + eps))
            out.setdefault("curvature", []).append((huu * gv * gv - 2 * huv * gu * gv + hvv * gu * gu) / (g2 + eps))
            out.setdefault("laplacian", []).append(huu + hvv)
        return {k: np.array(v) for k, v in out.items()}

    q = np.quantile(t, np.linspace(0.02, 0.98, n_bins))
    fx, ft = feats(x), feats(t)
    total = []
    for name in features:
        for k in range(n_bins):
            lo = q[k - 1] if k > 0 else 2 * q[0] - q[1]
            hi = q[k + 1] if k < n_bins - 1 else 2 * q[-1] - q[-2]
            h = (hi - lo) / 4
            wx, wt = np.exp(-0.5 * ((x - q[k]) / h) ** 2), np.exp(-0.5 * ((t - q[k]) / h) ** 2)
            scale = ft[name].std() * wt.mean()
            total.append(((np.mean(fx[name] * wx) - np.mean(ft[name] * wt)) / scale) ** 2)
    return np.mean(total)


def test_fit_kernels_are_exact_on_quadratics():
    u, v = np.tile([-1.0, 0.0, 1.0], 3), np.repeat([1.0, 0.0, -1.0], 3)
    k = fit_kernels()[0]
    # f = 1 + 2u - v + 0.5 u^2 - 1.5 v^2 + 3uv: d/du 2, d/dv -1, d2/du2 1, d2/dv2 -3, d2/dudv 3.
    f = 1 + 2 * u - v + 0.5 * u * u - 1.5 * v * v + 3 * u * v
    np.testing.assert_allclose(k @ f, [2.0, -1.0, 1.0, -3.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(k @ np.ones(9), 0.0, atol=1e-12)


@pytest.mark.parametrize("features", [("gradient",), ("gradient", "curvature"), ("curvature", "laplacian")])
def test_value_against_hand_computation(features):
    t, x = squared(N, 0), np.random.default_rng(1).normal(size=N)
    want = hand_distance(x, t, 5, features)
    assert float(morphology_distance(x, t, n_bins=5, features=features)) == pytest.approx(want, rel=1e-10)
    assert float(morphology_distance(t, t, n_bins=5, features=features)) == pytest.approx(0.0, abs=1e-20)
    # A batch of maps averages the windowed means over its maps; a 1-map batch is the map.
    assert float(morphology_distance(x[None], t, n_bins=5, features=features)) == pytest.approx(want, rel=1e-12)


def test_several_target_maps_and_a_finer_target():
    t2 = np.stack([squared(N, 0), squared(N, 1)])
    x = np.random.default_rng(2).normal(size=N)
    assert float(morphology_distance(t2, t2)) == pytest.approx(0.0, abs=1e-20)
    assert float(morphology_distance(x, t2)) > 0.0
    fine = squared(4 * N, 3)  # nside 8 target for an nside 4 map: allowed, like histogram_distance
    assert np.isfinite(float(morphology_distance(x, fine)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_numbers_on_every_backend(backend, dtype):
    bk = resolve_backend(backend)
    t, x = squared(N, 0), np.random.default_rng(1).normal(size=(2, N))
    want = float(morphology_distance(x, t, features=("gradient", "curvature", "laplacian")))
    got = morphology_distance(bk.asarray(x, dtype=dtype), t, features=("gradient", "curvature", "laplacian"))
    assert bk.dtype_name(got) == dtype
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-10 if dtype == "float64" else 1e-4)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_gradient_against_finite_differences(backend):
    bk = resolve_backend(backend)
    t, x0 = squared(N, 0), np.random.default_rng(1).normal(size=N)
    _, grad = bk.value_and_grad(lambda u: morphology_distance(u, t), bk.asarray(x0, dtype="float64"))
    grad = to_numpy(grad)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    for seed in (5, 6):
        d = np.random.default_rng(seed).normal(size=N)
        eps = 1e-6
        fd = (float(morphology_distance(x0 + eps * d, t)) - float(morphology_distance(x0 - eps * d, t))) / (2 * eps)
        assert grad @ d == pytest.approx(fd, rel=1e-5)


def test_regional_domain():
    """On cells of a region the stencil is the region's; the target must be on the same cells."""
    ids = np.arange(N // 2, dtype=np.int64)  # six NESTED base pixels at nside 4
    t, x = squared(ids.size, 0), np.random.default_rng(1).normal(size=ids.size)
    value = float(morphology_distance(x, t, nside=NSIDE, cell_ids=ids))
    assert value > 0 and np.isfinite(value)
    assert float(morphology_distance(t, t, nside=NSIDE, cell_ids=ids)) == pytest.approx(0.0, abs=1e-20)
    with pytest.raises(ValueError, match="target"):
        morphology_distance(x, squared(N, 0), nside=NSIDE, cell_ids=ids)


def test_a_synthesis_with_the_term_lowers_it():
    """In a torch L-BFGS synthesis with the histogram term the term falls from its white-noise value
    (it is smooth: hard bins by rank would stop the line search)."""
    t = squared(N, 0)

    def loss(x, op, args):
        return morphology_distance(x, t) + 10.0 * histogram_distance(x, t)

    x0 = np.random.default_rng(3).normal(size=N)
    out = Synthesis([Loss(loss, None, backend="torch")], verbose=False).run(x0, NUM_EPOCHS=30)
    assert float(morphology_distance(np.asarray(out).ravel(), t)) < 0.2 * float(morphology_distance(x0, t))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x": np.zeros((2, 2, N))}, ValueError, "x must be"),
    ({"x": np.zeros(50)}, ValueError, "x must be full-sky"),
    ({"target": np.full(N, np.nan)}, ValueError, "target holds NaN"),
    ({"target": np.ones(N)}, ValueError, "target is constant"),
    ({"target": np.ones((2, 2, N))}, ValueError, "target must be"),
    ({"n_bins": 1}, ValueError, "n_bins"),
    ({"n_bins": 4.0}, TypeError, "n_bins"),
    ({"features": ("gradient", "area")}, ValueError, "features"),
    ({"features": ()}, ValueError, "features"),
    ({"features": 3}, TypeError, "features"),
    ({"cell_ids": np.arange(10)}, ValueError, "nside is required"),
    ({"nest": "yes"}, TypeError, "nest"),
])
def test_bad_input_raises_naming_the_argument(kwargs, error, match):
    args = {"x": np.random.default_rng(1).normal(size=N), "target": squared(N, 0)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        morphology_distance(**args)


def test_torch_and_tensorflow_agree_in_a_synthesis():
    """The recommended loss with the morphology term: the same L-BFGS history on torch and on
    TensorFlow (whose loss Synthesis compiles with tf.function)."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    target = squared(N, 4)
    x0 = np.random.default_rng(5).normal(size=N)

    def loss(x, scat_op, args):
        st = scat_op.eval(x)
        xp = scat_op.backend.xp
        return (st.reduce_mean_batch((st - args[0]) ** 2) + xp.mean((xp.log(st.S2) - xp.log(args[0].S2)) ** 2)
                + 10.0 * histogram_distance(x, target) + 0.5 * morphology_distance(x, target))

    outs, hists = synthesise_on_torch_and_tensorflow(loss, target, x0)
    assert len(hists[0]) == len(hists[1]) > 5 and hists[0][-1] < 0.5 * hists[0][0]
    np.testing.assert_allclose(hists[1], hists[0], rtol=1e-7)
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-7)
