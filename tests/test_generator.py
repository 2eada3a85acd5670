"""Generator: a HEALPix decoder trained on scattering statistics (shapes on full sky, regions and
RING; the same samples on every backend; training lowers the loss; diversity; files; errors)."""

import healpy as hp
import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, cached_funct
from foscat_core.synthesis import Generator

NSIDE = 8
SMALL = dict(chanlist=[4, 8], latent_channels=4, seed=0)


def lognormal(nside, seed=0):
    """A standardised lognormal NESTED map with large-scale structure (smoothed white noise)."""
    rng = np.random.default_rng(seed)
    cl = 1.0 / (1.0 + np.arange(3 * nside)) ** 2
    np.random.seed(int(rng.integers(2**31)))
    g = hp.reorder(hp.synfast(cl, nside), r2n=True)
    x = np.exp(g / g.std())
    return (x - x.mean()) / x.std()


def region(nside):
    return hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.3), np.radians(50), nest=True)


# --- shapes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", *AUTOGRAD_BACKENDS])
def test_shapes_full_sky_region_ring(backend):
    gen = Generator(NSIDE, backend=backend, **SMALL)
    assert gen.sample(3, seed=0).shape == (3, 12 * NSIDE**2)
    ids = region(NSIDE)[::-1]  # any order
    reg = Generator(NSIDE, cell_ids=ids, backend=backend, **SMALL)
    maps = reg.sample(5, seed=0, batch_size=2)
    assert maps.shape == (5, len(ids)) and np.all(np.isfinite(maps))
    ring = Generator(NSIDE, nest=False, backend=backend, **SMALL)
    assert ring.sample(2, seed=0).shape == (2, 12 * NSIDE**2)
    tensor = gen.sample(2, seed=0, as_numpy=False)
    assert gen.backend.is_native(tensor) and tuple(tensor.shape) == (2, 12 * NSIDE**2)


def test_ring_output_is_the_nested_map_reordered():
    """A RING generator is the NESTED one with its cell axis in RING order (same weights, same noise:
    the latent levels are identical, so only the finest level's order differs)."""
    nest = Generator(NSIDE, backend="numpy", **SMALL)
    ring = Generator(NSIDE, nest=False, backend="numpy", **SMALL)
    a, b = nest.sample(2, seed=3), ring.sample(2, seed=3)
    # The finest level's noise is drawn in each generator's own cell order, so compare statistics
    # of the order-free kind plus the structure of the coarse part: equal means and variances.
    assert a.shape == b.shape
    ids = hp.ring2nest(NSIDE, np.arange(12 * NSIDE**2))
    reg_nest = Generator(NSIDE, cell_ids=ids, backend="numpy", **SMALL)   # NESTED ids in RING order
    assert np.allclose(reg_nest.sample(2, seed=3), b, atol=1e-6)


def test_sample_is_reproducible_and_batch_independent():
    gen = Generator(NSIDE, backend="numpy", **SMALL)
    a = gen.sample(5, seed=7, batch_size=5)
    assert np.array_equal(a, gen.sample(5, seed=7, batch_size=2))
    assert np.array_equal(a[:3], gen.sample(3, seed=7))
    assert not np.allclose(a, gen.sample(5, seed=8))
    assert not np.allclose(gen.sample(1), gen.sample(1))  # seed=None: fresh noise


@pytest.mark.skipif(len(AUTOGRAD_BACKENDS) < 2, reason="needs torch and TensorFlow")
def test_torch_and_tensorflow_give_the_same_samples():
    ids = region(NSIDE)
    for kwargs in ({}, {"cell_ids": ids}, {"nest": False}):
        # The network's own map (a quantile output may swap near-ties: tests/test_generator_terms.py)
        maps = {b: Generator(NSIDE, backend=b, output="sinh-arcsinh", **SMALL, **kwargs).sample(4, seed=11)
                for b in ("numpy", "torch", "tensorflow")}
        scale = np.abs(maps["numpy"]).max()
        for b in ("torch", "tensorflow"):
            assert np.max(np.abs(maps[b] - maps["numpy"])) <= 1e-5 * scale


# --- training ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def target():
    return lognormal(NSIDE)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_fit_lowers_the_loss(backend, target):
    op = cached_funct(backend, KERNELSZ=3, NORIENT=2, all_type="float32")
    gen = Generator(NSIDE, backend=backend, **SMALL)
    h = gen.fit(target, op, n_iter=25, batch_size=4, lr=1e-2, verbose=False, seed=0)
    assert len(h["loss"]) == 25 and all(np.isfinite(h["loss"]))
    # Default terms: the band powers (far off at first: an untrained network has little
    # large-scale power) drop first, the scattering distance follows.
    assert h["final_spectrum"] < 0.1 * h["initial_spectrum"] and h["final_distance"] < 0.8 * h["initial_distance"]
    assert np.mean(h["loss"][-5:]) < 0.5 * np.mean(h["loss"][:5])
    # The output scale comes from the target (mean 0, variance 1 here).
    assert float(gen.backend.to_numpy(gen.out_std)[0]) == pytest.approx(1.0, rel=1e-3)
    samples = gen.sample(8, seed=1)
    corr = np.corrcoef(samples)[np.triu_indices(8, 1)]
    assert np.mean(np.abs(corr)) < 0.3                      # not copies of one another
    assert np.max(np.abs(np.corrcoef(np.vstack([samples, target]))[-1, :-1])) < 0.6  # nor of the target


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_one_point_distance_is_the_sorted_values_distance(backend):
    """The one-point term is mean_b mean_n (sort(x_b)_n - q_n)**2 / var, over the mask's cells."""
    from foscat_core.backends import get_backend
    from foscat_core.synthesis.generator_training import one_point_distance, one_point_reference

    rng = np.random.default_rng(0)
    target, x = rng.exponential(size=(2, 50)), rng.normal(size=(3, 50)).astype("float32")
    mask = np.ones(50)
    mask[:10] = 0
    cells, q, var = one_point_reference(target, mask, 50)
    assert np.array_equal(cells, np.arange(10, 50)) and var == pytest.approx(target[:, 10:].var())
    expected = np.mean((np.sort(x[:, 10:], axis=1) - q) ** 2) / var
    bk = get_backend(backend)
    got = one_point_distance(bk.xp, bk.asarray(x), bk.asarray(cells, dtype="int64"), bk.asarray(q, dtype="float32"),
                             1.0 / var)
    assert float(bk.to_numpy(got)) == pytest.approx(expected, rel=1e-5)


def test_one_point_term_fixes_the_skewness(target):
    """On a skewed target, the one-point term drives the samples' histogram towards the target's."""
    op = cached_funct("torch", KERNELSZ=3, NORIENT=2, all_type="float32")
    t = (target - target.mean()) / target.std()
    skew = {}
    for weight in (5.0, 0.0):
        gen = Generator(NSIDE, backend="torch", output="sinh-arcsinh", **SMALL)
        h = gen.fit(target, op, n_iter=30, batch_size=4, lr=1e-2, verbose=False, one_point=weight, moments=0.0,
                    spectrum=0.0)
        z = gen.sample(8, seed=2)
        z = (z - z.mean(axis=1, keepdims=True)) / z.std(axis=1, keepdims=True)
        skew[weight] = np.mean(z**3)
        if weight:
            assert h["final_one_point"] < 0.3 * h["initial_one_point"]
        else:
            assert np.isnan(h["final_one_point"])
    assert skew[5.0] > 1.0 and abs(skew[5.0] - np.mean(t**3)) < abs(skew[0.0] - np.mean(t**3))
    with pytest.raises(ValueError, match="one_point"):
        gen.fit(op.eval(target, norm="self"), op, n_iter=1, verbose=False, one_point=1.0)
    with pytest.raises(ValueError, match="norm"):
        gen.fit(target, op, n_iter=1, verbose=False, norm="auto")


@pytest.mark.parametrize("backend", ["numpy", *AUTOGRAD_BACKENDS])
def test_fine_levels(backend):
    """The copy-up + convolution finest level (default) and the sub-pixel one: both sample, on a
    full sky and on a region in any order (the children gather), the same on every backend."""
    ids = region(NSIDE)[::-1]
    for fine in ("subpixel", "conv", "hybrid"):
        gen = Generator(NSIDE, cell_ids=ids, fine_level=fine, backend=backend, **SMALL)
        ref = Generator(NSIDE, cell_ids=ids, fine_level=fine, backend="numpy", **SMALL).sample(3, seed=5)
        maps = gen.sample(3, seed=5)
        assert np.max(np.abs(maps - ref)) <= 1e-5 * np.abs(ref).max() and np.std(maps) > 0
    assert Generator(NSIDE, backend="numpy", **SMALL).config["fine_level"] == "conv"


def test_subpixel_up_gives_each_child_its_channel_group():
    """Child 4p + q takes channels q of its parent p (c * 4 + q); any child order is a gather."""
    import foscat_core as fc
    from foscat_core.synthesis.generator_model import SubpixelUp

    st = fc.SphericalStencil(2, 3, backend="numpy")
    full = SubpixelUp(2, 3, st, None, None, seed=1)
    h = np.random.default_rng(0).normal(size=(2, 2, 48)).astype("float32")
    y, conv = full(h), full.conv(h)                                  # (2, 3, 192), (2, 12, 48)
    child = np.arange(192)
    assert np.array_equal(y, conv[:, (np.arange(3) * 4)[:, None] + child % 4, child // 4])
    order = np.random.default_rng(1).permutation(192)[:50]
    part = SubpixelUp(2, 3, st, None, order, seed=1)
    assert np.array_equal(part(h), y[:, :, order])


def test_fit_on_a_region_with_statistics_target_and_batch_match():
    ids = region(NSIDE)
    op = cached_funct("torch", KERNELSZ=3, NORIENT=2, all_type="float32")
    maps = np.stack([lognormal(NSIDE, s)[ids] for s in range(2)])
    ref = op.eval(maps, nside=NSIDE, cell_ids=ids, norm="self")
    gen = Generator(NSIDE, cell_ids=ids, output="sinh-arcsinh", backend="torch", **SMALL)  # quantile needs maps
    h = gen.fit(ref, op, n_iter=10, batch_size=3, verbose=False, match="batch")
    assert h["final_distance"] < h["initial_distance"]
    h2 = gen.fit(maps, op, n_iter=3, batch_size=2, verbose=False)  # a batch of maps, continued
    assert len(h2["loss"]) == 3


def test_fit_with_float64_operator_and_plain_statistics():
    op = cached_funct("torch", KERNELSZ=3, NORIENT=2)   # float64 operator, float32 generator
    target = lognormal(NSIDE)
    gen = Generator(NSIDE, output="linear", backend="torch", **SMALL)
    h = gen.fit(op.eval(target), op, n_iter=3, batch_size=2, verbose=False, diversity=0.0)  # norm=None
    assert all(np.isfinite(h["loss"]))


# --- files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("source,dest", [("torch", "tensorflow"), ("tensorflow", "numpy")])
def test_save_load_cross_backend(tmp_path, source, dest):
    if source not in AUTOGRAD_BACKENDS or (dest != "numpy" and dest not in AUTOGRAD_BACKENDS):
        pytest.skip("backend not installed")
    ids = region(NSIDE)
    gen = Generator(NSIDE, cell_ids=ids, nest=True, backend=source, **SMALL)
    op = cached_funct(source, KERNELSZ=3, NORIENT=2, all_type="float32")
    gen.fit(lognormal(NSIDE)[ids], op, n_iter=2, batch_size=2, verbose=False)
    path = tmp_path / "gen.npz"
    gen.save(path)
    other = Generator.load(path, backend=dest)
    assert type(other).__name__ == "Generator" and other.backend.name == dest
    assert np.array_equal(other.cell_ids, ids)
    a, b = gen.sample(3, seed=4), other.sample(3, seed=4)
    assert np.max(np.abs(a - b)) <= 1e-5 * np.abs(a).max()


def test_load_reads_files_without_the_output_option(tmp_path):
    """Files written before ``output`` existed hold a linear-output generator."""
    from foscat_core.nn.weights_file import write_weights

    gen = Generator(NSIDE, output="linear", backend="numpy", **SMALL)
    config = {k: v for k, v in gen.config.items() if k != "output"}
    write_weights(tmp_path / "old.npz", "Generator", config, None,
                  {name: gen.backend.to_numpy(v) for name, v in gen.named_variables()})
    old = Generator.load(tmp_path / "old.npz", backend="numpy")
    assert old.config["output"] == "linear" and np.array_equal(old.sample(2, seed=1), gen.sample(2, seed=1))
    assert Generator(NSIDE, backend="numpy", **SMALL).config["output"] == "sinh-arcsinh"


def test_load_refuses_other_files(tmp_path):
    from foscat_core.nn import CNN

    path = tmp_path / "cnn.npz"
    CNN(NSIDE, 1, [2], backend="numpy").save(path)
    with pytest.raises(ValueError, match="CNN"):
        Generator.load(path, backend="numpy")


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(nside=6), ValueError, "nside"),
    (dict(nside=8.0), TypeError, "nside"),
    (dict(nside=8, cell_ids=[1, 1, 2]), ValueError, "cell_ids"),
    (dict(nside=8, cell_ids=[-1, 2]), ValueError, "cell_ids"),
    (dict(nside=8, chanlist=[]), ValueError, "chanlist"),
    (dict(nside=8, chanlist=[4, 0]), ValueError, "chanlist"),
    (dict(nside=2, chanlist=[4, 4, 4, 4]), ValueError, "chanlist"),
    (dict(nside=8, chanlist=[4, 8], latent_nside=2), ValueError, "latent_nside"),
    (dict(nside=8, latent_nside=16), ValueError, "latent_nside"),
    (dict(nside=8, latent_channels=0), ValueError, "latent_channels"),
    (dict(nside=8, KERNELSZ=4), ValueError, "KERNELSZ"),
    (dict(nside=8, norm="layer"), ValueError, "norm"),
    (dict(nside=8, n_convs=[1]), ValueError, "n_convs"),
    (dict(nside=8, nest="yes"), TypeError, "nest"),
    (dict(nside=8, dtype="float16"), ValueError, "dtype"),
    (dict(nside=8, fine_level="shuffle"), ValueError, "fine_level"),
    (dict(nside=8, output="exp"), ValueError, "output"),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Generator(backend="numpy", **kwargs)


def test_sample_and_fit_errors(target):
    gen = Generator(NSIDE, backend="torch", **SMALL)
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must"):
            gen.sample(n)
    with pytest.raises(ValueError, match="seed"):
        gen.sample(2, seed=-3)
    op = cached_funct("torch", KERNELSZ=3, NORIENT=2, all_type="float32")
    with pytest.raises(ValueError, match="target must have shape"):
        gen.fit(target[:100], op, n_iter=1, verbose=False)
    with pytest.raises(ValueError, match="target must have shape"):
        gen.fit(target[None, None], op, n_iter=1, verbose=False)
    bad = target.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gen.fit(bad, op, n_iter=1, verbose=False)
    with pytest.raises(ValueError, match="n_iter"):
        gen.fit(target, op, n_iter=0, verbose=False)
    with pytest.raises(ValueError, match="match"):
        gen.fit(target, op, match="pixel", verbose=False)
    with pytest.raises(TypeError, match="scat_op"):
        gen.fit(target, object(), verbose=False)
    other = "tensorflow" if "tensorflow" in AUTOGRAD_BACKENDS else "numpy"
    with pytest.raises(ValueError, match="scat_op runs on the"):
        gen.fit(target, cached_funct(other, KERNELSZ=3, NORIENT=2), n_iter=1, verbose=False)
    with pytest.raises(NotImplementedError, match="numpy"):
        Generator(NSIDE, backend="numpy", **SMALL).fit(target, cached_funct("numpy", KERNELSZ=3, NORIENT=2),
                                                       verbose=False)
