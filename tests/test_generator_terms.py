"""Generator pieces added for issue 12's quality and speed targets: the hybrid finest level (sub-pixel
up reading the finest noise drawn at the parent level), the sinh-arcsinh output, the Haar band-power
term and ``match="both"``; each on every backend, on the full sky and on a region."""

import healpy as hp
import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, cached_funct
from foscat_core.backends import get_backend
from foscat_core.synthesis import Generator
from foscat_core.synthesis.generator_model import sinh_arcsinh
from foscat_core.synthesis.generator_spectrum import HaarBands

NSIDE = 8
SMALL = dict(chanlist=[4, 8], latent_channels=4, seed=0)
BACKENDS = ["numpy", *AUTOGRAD_BACKENDS]


def region(nside):
    return hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.3), np.radians(50), nest=True)


def lognormal(nside, seed=0):
    np.random.seed(seed)
    g = hp.reorder(hp.synfast(1.0 / (1.0 + np.arange(3 * nside)) ** 2, nside), r2n=True)
    x = np.exp(g / g.std())
    return (x - x.mean()) / x.std()


@pytest.mark.parametrize("backend", BACKENDS)
def test_hybrid_fine_level_same_samples_on_every_backend(backend):
    """Full sky, a region in any order (the sub-pixel gather) and RING: the numpy numbers."""
    for kwargs in ({}, {"cell_ids": region(NSIDE)[::-1]}, {"nest": False}):
        gen = Generator(NSIDE, fine_level="hybrid", backend=backend, **SMALL, **kwargs)
        ref = Generator(NSIDE, fine_level="hybrid", backend="numpy", **SMALL, **kwargs).sample(3, seed=5)
        maps = gen.sample(3, seed=5)
        assert maps.shape == ref.shape and np.std(maps) > 0
        assert np.max(np.abs(maps - ref)) <= 1e-5 * np.abs(ref).max()


def test_hybrid_draws_the_finest_noise_at_the_parent_level():
    """The finest level's noise: 4 channels per noise map at nside / 2, and it matters (other noise,
    other map); without noise channels the finest level is the sub-pixel up of the features only."""
    gen = Generator(NSIDE, fine_level="hybrid", noise_channels=2, backend="numpy", **SMALL)
    noise = gen.draw_noise(2, seed=0)
    assert noise[-1].shape == (2, 8, 12 * (NSIDE // 2) ** 2)
    a = gen.backend.to_numpy(gen(noise))
    noise[-1] = noise[-1] + 1.0
    assert not np.allclose(a, gen.backend.to_numpy(gen(noise)))
    quiet = Generator(NSIDE, fine_level="hybrid", noise_channels=0, backend="numpy", **SMALL)
    assert quiet.draw_noise(1, seed=0)[-1].shape[1] == 0 and quiet.sample(2, seed=0).shape == (2, 12 * NSIDE**2)


def test_sinh_arcsinh_output():
    """Identity at its initial values (so the samples equal the linear output's), monotone, skewed
    by ``skew`` (< 0: heavier upper tail) and heavier-tailed for ``log_delta`` > 0."""
    xp = get_backend("numpy").xp
    u = np.linspace(-6, 6, 1001)
    assert np.allclose(sinh_arcsinh(xp, u, 0.0, 0.0), u, atol=1e-9)
    assert np.allclose(sinh_arcsinh(xp, u, 0.3, -0.4), np.sinh(np.exp(0.3) * np.arcsinh(u) + 0.4))
    y = sinh_arcsinh(xp, u, 0.2, -0.5)
    assert np.all(np.diff(y) > 0) and y[-1] > -y[0] > 0
    linear = Generator(NSIDE, output="linear", backend="numpy", **SMALL)
    sas = Generator(NSIDE, output="sinh-arcsinh", backend="numpy", **SMALL)
    assert np.allclose(sas.sample(2, seed=1), linear.sample(2, seed=1), atol=1e-6)
    assert sas.n_parameters() == linear.n_parameters() + 2
    with pytest.raises(ValueError, match="output"):
        Generator(NSIDE, output="exp", backend="numpy")


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_sinh_arcsinh_trained_saved_and_loaded(tmp_path, backend):
    """Its two numbers train (they move from 0) and travel with the weights to another backend."""
    op = cached_funct(backend, KERNELSZ=3, NORIENT=2, all_type="float32")
    ids = region(NSIDE)
    gen = Generator(NSIDE, cell_ids=ids, output="sinh-arcsinh", fine_level="hybrid", backend=backend, **SMALL)
    # The scattering distance alone moves them (the map terms off: a smaller graph to compile).
    gen.fit(lognormal(NSIDE)[ids], op, n_iter=4, batch_size=2, lr=1e-2, verbose=False, one_point=0.0, spectrum=0.0,
            moments=0.0)
    assert abs(float(gen.backend.to_numpy(gen.out_skew)[0])) > 0
    gen.save(tmp_path / "g.npz")
    other = Generator.load(tmp_path / "g.npz", backend="numpy")
    a, b = gen.sample(2, seed=3), other.sample(2, seed=3)
    assert np.max(np.abs(a - b)) <= 1e-5 * np.abs(a).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_haar_bands(backend):
    """White noise: the detail energy quarters level by level (e_0 = 3/4 var, e_1 = 3/16 var);
    a region or a RING ordering of all the cells gives the NESTED full sky's numbers; on a region
    only its cells count (a constant map inside it has no detail energy)."""
    bk = get_backend(backend)
    x = np.random.default_rng(0).normal(size=(4, 12 * 16**2))
    full = HaarBands(16, None, x.shape[1]).to(bk, "float64" if backend == "numpy" else "float32")
    e = bk.to_numpy(full.energies(bk.xp, bk.asarray(x, dtype="float32")))
    assert e.shape == (4, 4) and np.allclose(e[:, 0], 0.75, rtol=0.05) and np.allclose(e[:, 1], 0.1875, rtol=0.1)
    perm = hp.ring2nest(16, np.arange(12 * 16**2))  # NESTED ids in RING order
    ring = HaarBands(16, perm, perm.size).to(bk, "float32")
    assert np.allclose(bk.to_numpy(ring.energies(bk.xp, bk.asarray(x[:, perm], dtype="float32"))), e, rtol=1e-4)
    ids = region(16)
    part = HaarBands(16, ids, ids.size).to(bk, "float32")
    flat = bk.to_numpy(part.energies(bk.xp, bk.asarray(np.ones((1, ids.size)), dtype="float32")))
    assert np.allclose(flat, 0.0, atol=1e-6)


def test_spectrum_term_and_both_match_train():
    """``spectrum`` adds the band-power term (reported, and it goes down); ``match="both"`` trains."""
    op = cached_funct("torch", KERNELSZ=3, NORIENT=2, all_type="float32")
    target = lognormal(NSIDE)
    gen = Generator(NSIDE, fine_level="hybrid", backend="torch", **SMALL)
    h = gen.fit(target, op, n_iter=25, batch_size=4, lr=1e-2, verbose=False, spectrum=1.0, match="both")
    assert h["final_spectrum"] < 0.5 * h["initial_spectrum"] and h["final_distance"] < h["initial_distance"]
    h0 = gen.fit(target, op, n_iter=1, batch_size=2, verbose=False, spectrum=0.0)
    assert np.isnan(h0["final_spectrum"])
    with pytest.raises(ValueError, match="spectrum"):
        gen.fit(op.eval(target, norm="self"), op, n_iter=1, verbose=False, spectrum=1.0, one_point=0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_band_powers_low_octaves_are_anafast_band_powers(backend):
    """The exact octaves (ell 2-3, 4-7, 8-15) are the map's harmonic power there: N/(4 pi) times
    sum (2l + 1) C_l of anafast; then two Haar numbers per level from nside to 16."""
    from foscat_core.synthesis.generator_spectrum import BandPowers

    nside = 16
    np.random.seed(1)
    ring = hp.synfast(1.0 / (1.0 + np.arange(3 * nside)) ** 1.5, nside)
    cl = hp.anafast(ring, lmax=3 * nside - 1)
    ell = np.arange(cl.size)
    expected = [np.sum((2 * ell[lo:hi] + 1) * cl[lo:hi]) * ring.size / (4 * np.pi) for lo, hi in ((2, 4), (4, 8), (8, 16))]
    bk = get_backend(backend)
    bands = BandPowers(nside, None, ring.size).to(bk, "float32")
    e = bk.to_numpy(bands.energies(bk.xp, bk.asarray(hp.reorder(ring, r2n=True)[None], dtype="float32")))[0]
    assert e.shape == (3 + 2,) and np.allclose(e[:3], expected, rtol=5e-3) and np.all(e[3:] > 0)


# JAX runs the same code through values_at_ranks and stop_gradient (both tested on it below);
# its training compile would add ~10 s to the suite.
@pytest.mark.parametrize("backend", [b for b in AUTOGRAD_BACKENDS if b != "jax"])
def test_quantile_output_takes_the_target_values(backend, tmp_path):
    """``output="quantile"``: before fit, standard normal quantiles; after, every sample holds the
    target's values exactly (full sky and a region in any order), the loss still trains
    (straight-through gradient), files keep the quantiles, statistics targets are refused."""
    from scipy.stats import norm

    op = cached_funct(backend, KERNELSZ=3, NORIENT=2, all_type="float32")
    fresh = Generator(NSIDE, output="quantile", backend=backend, **SMALL).sample(2, seed=1)
    n = fresh.shape[1]
    assert np.allclose(np.sort(fresh, axis=1), norm.ppf((np.arange(n) + 0.5) / n), atol=1e-5)
    target = lognormal(NSIDE)
    gen = Generator(NSIDE, output="quantile", backend=backend, **SMALL)
    h = gen.fit(target, op, n_iter=12, batch_size=4, lr=1e-2, verbose=False, one_point=0.0, moments=0.0)
    assert h["loss"][-1] < h["loss"][0]
    maps = gen.sample(3, seed=2)
    assert np.allclose(np.sort(maps, axis=1), np.sort(target), atol=1e-5)
    assert np.mean(np.abs(np.corrcoef(maps)[np.triu_indices(3, 1)])) < 0.5  # not one map three times
    gen.save(tmp_path / "q.npz")
    loaded = Generator.load(tmp_path / "q.npz", backend="numpy").sample(3, seed=2)
    # The same quantiles in the same ranks, up to near-ties that float32 rounding may swap.
    assert np.allclose(np.sort(loaded, axis=1), np.sort(maps, axis=1)) and np.mean(np.abs(loaded - maps) > 1e-5) < 0.02
    with pytest.raises(ValueError, match="quantile"):
        gen.fit(op.eval(target, norm="self"), op, n_iter=1, verbose=False, one_point=0.0)
    if backend != "torch":  # the region's gathers are the same code on every backend; one compile saved
        return
    ids = region(NSIDE)[::-1]
    part = Generator(NSIDE, cell_ids=ids, output="quantile", backend=backend, **SMALL)
    part.fit(target[ids], op, n_iter=2, batch_size=2, verbose=False)
    assert np.allclose(np.sort(part.sample(2, seed=3), axis=1), np.sort(target[ids]), atol=1e-5)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_stop_gradient(backend):
    bk = get_backend(backend)
    x0 = np.array([1.0, -2.0, 3.0])
    _, grad = bk.value_and_grad(lambda x: bk.xp.sum(bk.stop_gradient(x) * x * x), bk.asarray(x0, dtype="float64"))
    np.testing.assert_allclose(bk.to_numpy(grad), 2 * x0 * x0)  # d/dx of c x**2 with c = x held


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_at_ranks(backend):
    bk = get_backend(backend)
    y = np.random.default_rng(0).normal(size=(3, 50))
    y[:, ::5] = 0.25  # ties: ranked by position, on every backend
    values = np.sort(np.random.default_rng(1).lognormal(size=50))
    want = values[np.argsort(np.argsort(y, axis=1, kind="stable"), axis=1, kind="stable")]
    got = bk.values_at_ranks(bk.asarray(y, dtype="float32"), bk.asarray(values, dtype="float32"))
    np.testing.assert_allclose(bk.to_numpy(got), want, rtol=1e-6)
