"""reduce_distance (value, sigma, gradient, backends, bad input) and the batch mean/std it uses."""

import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, cached_funct, to_numpy
from foscat_core.backends import resolve_backend
from foscat_core.scattering import reduce_distance

NSIDE = 4
NPIX = 12 * NSIDE**2


def op_of(backend):
    return cached_funct(backend, KERNELSZ=3, NORIENT=2)


def realisations(n, seed):
    """``n`` non-Gaussian maps (squares of correlated noise), shape (n, NPIX)."""
    g = np.random.default_rng(seed).normal(size=(n, NPIX))
    return (g + 0.5 * np.roll(g, 1, axis=1)) ** 2


def hand_distance(stat, ref, sigma=None):
    """NumPy: mean over b and every coefficient (complex counted once) of |s - r|**2 / sigma**2."""
    s, r = stat.numpy(), ref.numpy()
    sd = None if sigma is None else sigma.numpy()
    terms = []
    for k in s:
        t = np.abs(s[k] - r[k]) ** 2
        if sd is not None:
            t = t / sd[k] ** 2
        terms.append(np.broadcast_to(t, np.broadcast_shapes(s[k].shape, r[k].shape)).ravel())
    return np.concatenate(terms).mean()


@pytest.mark.parametrize("cross", [False, True])
def test_value_against_hand_computation(backend_name, cross):
    op = op_of(backend_name)
    x, y = realisations(3, 1), realisations(3, 2)
    stat = op.eval(x, y) if cross else op.eval(x, norm="self")
    batch = op.eval(y, x) if cross else op.eval(y, norm="self")
    ref, sigma = batch.mean_batch(), batch.std_batch()
    n_coeffs = sum(int(np.prod(v.shape)) for v in stat.numpy().values())
    got = float(to_numpy(reduce_distance(stat, ref)))
    assert np.isclose(got, hand_distance(stat, ref), rtol=1e-12)
    assert np.isclose(got, float(to_numpy(((stat - ref) ** 2).reduce_sum())) / n_coeffs, rtol=1e-12)
    with_sigma = float(to_numpy(op.reduce_distance(stat, ref, sigma)))
    assert np.isclose(with_sigma, hand_distance(stat, ref, sigma), rtol=1e-12)
    assert not np.isclose(with_sigma, got)
    # a reference of batch 1 meets a statistics of batch 1 the same way (no batch broadcast bias)
    one = float(to_numpy(reduce_distance(stat.map(lambda a: a[:1]), ref)))
    assert np.isclose(one, hand_distance(stat.map(lambda a: a[:1]), ref), rtol=1e-12)


def test_sigma_from_a_batch_of_realisations(backend_name):
    batch = op_of(backend_name).eval(realisations(6, 3), norm="self")
    mean, sigma = batch.mean_batch(), batch.std_batch()
    n = batch.numpy()
    for k, v in n.items():
        assert np.allclose(mean.numpy()[k][0], v.mean(axis=0), rtol=1e-12)
        want = np.sqrt(v.real.var(axis=0) + v.imag.var(axis=0))  # real: the plain std
        assert np.allclose(sigma.numpy()[k][0], want, rtol=1e-10)
        assert sigma.numpy()[k].shape == (1,) + v.shape[1:]
    # In units of its own scatter, each realisation is at distance 1 on average from the mean.
    assert np.isclose(float(to_numpy(reduce_distance(batch, mean, sigma))), 1.0, rtol=1e-10)
    # A realisation outside the batch is at a distance of order 1 too (same process), a white
    # noise map far more (other process).
    other = op_of(backend_name).eval(realisations(1, 99), norm="self")
    white = op_of(backend_name).eval(np.random.default_rng(4).normal(size=NPIX), norm="self")
    near = float(to_numpy(reduce_distance(other, mean, sigma)))
    far = float(to_numpy(reduce_distance(white, mean, sigma)))
    assert 0.2 < near < 10 and far > 5 * near


def test_same_numbers_on_every_backend(backend_name):
    x, batch = realisations(2, 5), realisations(5, 6)
    ref_np = cached_funct("numpy", KERNELSZ=3, NORIENT=2).eval(batch, norm="self")
    want = [float(reduce_distance(cached_funct("numpy", KERNELSZ=3, NORIENT=2).eval(x, norm="self"),
                                  ref_np.mean_batch(), s)) for s in (None, ref_np.std_batch())]
    op = op_of(backend_name)
    ref = op.eval(batch, norm="self")
    got = [float(to_numpy(reduce_distance(op.eval(x, norm="self"), ref.mean_batch(), s)))
           for s in (None, ref.std_batch())]
    assert np.allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
@pytest.mark.parametrize("use_sigma", [False, True])
def test_gradient_against_finite_differences(backend, use_sigma):
    bk = resolve_backend(backend)
    op = op_of(backend)
    batch = op.eval(realisations(4, 7), norm="self")
    ref, sigma = batch.mean_batch(), (batch.std_batch() if use_sigma else None)
    x0 = realisations(1, 8)[0]

    def loss(u):
        return reduce_distance(op.eval(u, norm="self"), ref, sigma)

    value, grad = bk.value_and_grad(loss, bk.asarray(x0, dtype="float64"))
    grad = to_numpy(grad)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    rng = np.random.default_rng(9)
    for _ in range(3):
        d = rng.normal(size=NPIX)
        eps = 1e-5
        fd = (float(to_numpy(loss(x0 + eps * d))) - float(to_numpy(loss(x0 - eps * d)))) / (2 * eps)
        assert np.isclose(grad @ d, fd, rtol=1e-5, atol=1e-9 * abs(float(to_numpy(value))))


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_std_batch_differentiable_where_the_batch_is_constant(backend):
    bk = resolve_backend(backend)
    op = op_of(backend)
    x0 = realisations(1, 10)[0]

    def spread(u):  # two identical maps: every standard deviation is 0
        stats = op.eval(u[None, :] * bk.asarray(np.ones((2, 1)), dtype="float64"))
        return stats.std_batch().reduce_sum()

    value, grad = bk.value_and_grad(spread, bk.asarray(x0, dtype="float64"))
    # 0 up to rounding: a compiled (XLA) evaluation may round the two rows an ulp apart.
    grad = to_numpy(grad)
    assert 0.0 <= float(to_numpy(value)) <= 1e-12
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() <= 1e-12


def test_bad_input():
    op = op_of("numpy")
    stat = op.eval(realisations(2, 11))
    with pytest.raises(TypeError, match="ref must be ScatteringStatistics"):
        reduce_distance(stat, np.zeros(3))
    with pytest.raises(TypeError, match="stat must be ScatteringStatistics"):
        reduce_distance(1.0, stat)
    with pytest.raises(ValueError, match="Jmax: 3 vs 1"):
        reduce_distance(stat, op.eval(realisations(1, 12), Jmax=1))
    with pytest.raises(ValueError, match="different shapes"):
        reduce_distance(stat, op.eval(realisations(3, 12)))
    with pytest.raises(ValueError, match="norm"):
        reduce_distance(stat, op.eval(realisations(1, 12), norm="self"))
    with pytest.raises(TypeError, match="sigma must be real statistics"):
        reduce_distance(stat, stat.mean_batch(), sigma=stat.mean_batch())
    with pytest.raises(TypeError, match="sigma must be ScatteringStatistics"):
        reduce_distance(stat, stat.mean_batch(), sigma=0.1)
    with pytest.raises(ValueError, match="S0 has 2 entries"):
        reduce_distance(stat, stat.mean_batch(), sigma=stat.std_batch().map(lambda a: a * 0))
    with pytest.raises(ValueError, match="different shapes"):
        reduce_distance(stat, stat.mean_batch(), sigma=op.eval(realisations(3, 13)).std_batch().map(
            lambda a: np.concatenate([a, a, a], axis=0)))
