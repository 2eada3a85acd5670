"""Networks on RING ids (``nest=False``) and built from an xarray grid (``from_grid``).

RING results are checked against the NESTED network on the same cells, with the cells matched
by healpy (``healpy.reorder`` / ``healpy.ring2nest``), on every backend.
"""

import healpy as hp
import numpy as np
import pytest
from conftest import BACKENDS, to_numpy

from foscat_core.nn import CNN, GCNN, HealpixUNet, HealpixViT

NSIDE = 4
NPIX = 12 * NSIDE**2
KINDS = ["unet", "cnn", "gcnn", "vit"]


def make(kind, backend, **kw):
    kw.setdefault("seed", 5)
    if kind == "unet":
        return HealpixUNet(NSIDE, 2, [3, 4], backend=backend, **kw)
    if kind == "cnn":
        return CNN(NSIDE, 2, [4], backend=backend, **kw)
    if kind == "gcnn":
        return GCNN(nparam=1, chanlist=[2, 4], in_nside=NSIDE, backend=backend, **kw)
    return HealpixViT(NSIDE, 2, token_nside=2, embed_dim=8, depth=1, num_heads=2, backend=backend, **kw)


def maps(n_cells, seed=0):
    return np.random.default_rng(seed).normal(size=(2, 2, n_cells)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_full_sky_ring_network_is_the_nested_one_reordered(kind, backend_name):
    x_nest = maps(NPIX, seed=1)
    x_ring = hp.reorder(x_nest.reshape(-1, NPIX), n2r=True).reshape(x_nest.shape)
    nested = make(kind, backend_name).eval()
    ring = make(kind, backend_name, nest=False).eval()
    assert ring.cell_ids is None and ring.nest is False and ring.config["nest"] is False
    y_ring = to_numpy(ring(x_ring))
    back = hp.reorder(y_ring.reshape(-1, NPIX), r2n=True).reshape(y_ring.shape)
    np.testing.assert_allclose(back, to_numpy(nested(x_nest)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_regional_ring_network_is_the_nested_one_on_the_same_cells(kind, backend_name):
    ring_ids = hp.query_disc(NSIDE, hp.ang2vec(np.pi / 3, 0.5), np.radians(50), nest=False)  # ascending RING
    nest_ids = np.sort(hp.ring2nest(NSIDE, ring_ids))  # the same cells, ascending NESTED
    where = np.searchsorted(nest_ids, hp.ring2nest(NSIDE, ring_ids))  # RING position -> NESTED position
    x_nest = maps(nest_ids.size, seed=2)
    nested = make(kind, backend_name, cell_ids=nest_ids).eval()
    ring = make(kind, backend_name, cell_ids=ring_ids, nest=False).eval()
    np.testing.assert_array_equal(ring.cell_ids, ring_ids)  # the user's ids, as given
    np.testing.assert_array_equal(ring.domain.cell_ids, nest_ids[where])  # NESTED, in the user's order
    y_ring = to_numpy(ring(x_nest[..., where]))
    np.testing.assert_allclose(y_ring, to_numpy(nested(x_nest))[..., where], rtol=1e-5, atol=1e-5)


def test_ring_network_saves_and_loads_in_ring(tmp_path):
    ring_ids = np.array([5, 0, 17, 40, 6, 18, 1, 30], dtype=np.int64)
    net = make("cnn", BACKENDS[-1], cell_ids=ring_ids, nest=False)
    net.save(tmp_path / "ring.npz")
    loaded = CNN.load(tmp_path / "ring.npz", backend="numpy")
    assert loaded.nest is False
    np.testing.assert_array_equal(loaded.cell_ids, ring_ids)
    x = maps(ring_ids.size, seed=3)
    np.testing.assert_allclose(loaded.eval()(x), to_numpy(net.eval()(x)), rtol=1e-5, atol=1e-5)


def test_nest_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"cell_ids must lie in \[0, 191\]"):
        make("cnn", "numpy", cell_ids=[0, 192], nest=False)
    with pytest.raises(TypeError, match="nest must be True"):
        make("unet", "numpy", nest="ring")
    with pytest.raises(ValueError, match="cell_ids"):
        make("vit", "numpy", cell_ids=[3, 3], nest=False)


# --- from_grid ----------------------------------------------------------------------------------
def grid_map(ids, scheme="ring", level=2, n_chan=2):
    xr = pytest.importorskip("xarray")  # an optional extra
    attrs = {"grid_name": "healpix", "level": level, "indexing_scheme": scheme}
    values = np.zeros((3, n_chan, len(ids)), np.float32)
    return xr.DataArray(values, dims=("time", "channel", "cells"), coords={"cell_ids": ("cells", ids, attrs)})


@pytest.mark.parametrize("kind", KINDS)
def test_from_grid_reads_nside_ids_and_ordering(kind):
    ring_ids = np.array([5, 0, 17, 40, 6, 18, 1, 30], dtype=np.int64)
    da = grid_map(ring_ids)
    cls = {"unet": HealpixUNet, "cnn": CNN, "gcnn": GCNN, "vit": HealpixViT}[kind]
    kwargs = {"unet": dict(n_chan_in=2, chanlist=[3, 4]), "cnn": dict(n_chan_in=2, chanlist=[4]),
              "gcnn": dict(chanlist=[2, 4]), "vit": dict(n_chan_in=2, embed_dim=8, num_heads=2)}[kind]
    net = cls.from_grid(da, backend="numpy", seed=5, **kwargs)
    assert net.in_nside == NSIDE and net.nest is False
    np.testing.assert_array_equal(net.cell_ids, ring_ids)
    np.testing.assert_array_equal(net.domain.cell_ids, hp.ring2nest(NSIDE, ring_ids))
    explicit = cls(in_nside=NSIDE, cell_ids=ring_ids, nest=False, backend="numpy", seed=5, **kwargs)
    x = maps(ring_ids.size, seed=4)
    np.testing.assert_array_equal(net(x), explicit(x))


def test_from_grid_refuses_conflicting_arguments_and_bad_grids():
    da = grid_map(np.arange(8))
    with pytest.raises(ValueError, match="from_grid reads in_nside"):
        CNN.from_grid(da, in_nside=8, n_chan_in=2, chanlist=[4], backend="numpy")
    with pytest.raises(ValueError, match="from_grid reads nest"):
        CNN.from_grid(da, nest=True, n_chan_in=2, chanlist=[4], backend="numpy")
    with pytest.raises(ValueError, match="zuniq"):
        CNN.from_grid(grid_map(np.arange(8), scheme="zuniq"), n_chan_in=2, chanlist=[4], backend="numpy")
    with pytest.raises(TypeError, match="xarray.DataArray"):
        CNN.from_grid(np.zeros((1, 2, 8)), n_chan_in=2, chanlist=[4], backend="numpy")
    same = CNN.from_grid(da, in_nside=NSIDE, nest=False, n_chan_in=2, chanlist=[4], backend="numpy")
    assert same.in_nside == NSIDE  # agreeing explicit values are fine


def test_cell_ids_may_be_an_xarray_coordinate():
    ids = np.array([12, 13, 14, 15, 3, 7], dtype=np.int64)
    da = grid_map(ids, scheme="nested")
    net = CNN(NSIDE, 2, [4], cell_ids=da.cell_ids, backend="numpy", seed=1)
    assert isinstance(net.cell_ids, np.ndarray) and net.cell_ids.dtype == np.int64
    np.testing.assert_array_equal(net.cell_ids, ids)
    x = maps(ids.size, seed=6)
    np.testing.assert_array_equal(net(x), CNN(NSIDE, 2, [4], cell_ids=ids, backend="numpy", seed=1)(x))
