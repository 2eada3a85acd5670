"""histogram_distance: the one-point term of a synthesis loss (issue 13)."""

import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, BACKENDS, to_numpy
from foscat_core.backends import resolve_backend
from foscat_core.synthesis import Loss, Synthesis, histogram_distance

N = 192  # nside 4


def lognormal(n, seed):
    return np.random.default_rng(seed).lognormal(sigma=0.8, size=n)


def test_value_against_hand_computation():
    t, x = lognormal(N, 0), np.random.default_rng(1).normal(size=(3, N))
    want = np.mean((np.sort(x, axis=1) - np.sort(t)) ** 2) / t.var()
    assert float(histogram_distance(x, t)) == pytest.approx(want, rel=1e-12)
    # The target's values in another order are at distance 0; a shifted copy at shift**2 / var.
    assert float(histogram_distance(np.random.default_rng(2).permutation(t), t)) == 0.0
    assert float(histogram_distance(t + 0.5, t)) == pytest.approx(0.25 / t.var(), rel=1e-12)


def test_several_target_maps_and_other_sizes():
    targets = np.stack([lognormal(N, 0), lognormal(N, 1)])
    x = lognormal(N, 2)
    q = np.sort(targets, axis=1).mean(axis=0)
    assert float(histogram_distance(x, targets)) == pytest.approx(np.mean((np.sort(x) - q) ** 2) / targets.var(),
                                                                 rel=1e-12)
    # A target of 4x the cells: its quantiles at x's ranks (here every 4-cell block's middle).
    big = np.sort(lognormal(4 * N, 3))
    q = 0.5 * (big[1::4] + big[2::4])
    assert float(histogram_distance(x, big)) == pytest.approx(np.mean((np.sort(x) - q) ** 2) / big.var(), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_numbers_on_every_backend(backend, dtype):
    bk = resolve_backend(backend)
    t, x = lognormal(N, 0), np.random.default_rng(1).normal(size=(2, N))
    want = float(histogram_distance(x, t))
    got = histogram_distance(bk.asarray(x, dtype=dtype), t)
    assert bk.dtype_name(got) == dtype
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-10 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_gradient_against_finite_differences(backend):
    bk = resolve_backend(backend)
    t, x0 = lognormal(N, 0), np.random.default_rng(1).normal(size=N)
    value, grad = bk.value_and_grad(lambda u: histogram_distance(u, t), bk.asarray(x0, dtype="float64"))
    grad = to_numpy(grad)
    # Analytic: 2 (x_i - q_rank(i)) / (N var).
    q = np.sort(t)[np.argsort(np.argsort(x0))]
    np.testing.assert_allclose(grad, 2 * (x0 - q) / (N * t.var()), rtol=1e-10)
    d = np.random.default_rng(5).normal(size=N)
    eps = 1e-6
    fd = (float(histogram_distance(x0 + eps * d, t)) - float(histogram_distance(x0 - eps * d, t))) / (2 * eps)
    assert grad @ d == pytest.approx(fd, rel=1e-6)


def test_a_synthesis_with_the_term_takes_the_target_values():
    """Alone in a loss, L-BFGS moves a white-noise start to the target's histogram."""
    t = lognormal(N, 0)

    def loss(x, op, args):
        return histogram_distance(x, t)

    x0 = np.random.default_rng(3).normal(size=N)
    out = Synthesis([Loss(loss, None, backend="torch")], verbose=False).run(x0, NUM_EPOCHS=50)
    assert float(histogram_distance(x0, t)) > 0.3
    assert float(histogram_distance(out, t)) < 1e-6
    # Ranks kept: the map is the start's values replaced by the target's, rank for rank.
    np.testing.assert_array_equal(np.argsort(np.asarray(out).ravel()), np.argsort(x0))


@pytest.mark.parametrize("x, target, match", [
    (np.zeros((2, 2, N)), lognormal(N, 0), "x must be"),
    (np.zeros(N), np.ones(N), "constant"),
    (np.zeros(N), np.full(N, np.nan), "NaN"),
    (np.zeros(N), np.zeros((2, 2, N)), "target must be"),
])
def test_bad_input(x, target, match):
    with pytest.raises(ValueError, match=match):
        histogram_distance(x, target)
