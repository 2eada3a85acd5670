"""xarray DataArrays (xdggs convention) in and out of the ops, plots and Synthesis."""

import subprocess
import sys

import healpy as hp
import numpy as np
import pytest

xr = pytest.importorskip("xarray")

import foscat_core as fc  # noqa: E402
from foscat_core.xarray_io import cell_coordinate, grid_attrs, grid_of, like  # noqa: E402

from conftest import assert_close  # noqa: E402

NSIDE = 8
NPIX = 12 * NSIDE * NSIDE


def _ids(rng, nest=True):
    ids = rng.permutation(hp.query_disc(NSIDE, hp.ang2vec(1.0, 2.0), np.radians(35), nest=True)).astype(np.int64)
    return ids if nest else hp.nest2ring(NSIDE, ids).astype(np.int64)


def _map(rng, ids, nest=True, dims=("time", "band", "cells")):
    """A (time=2, band=3, cells) map with coordinates on every dim and one along the cells."""
    shape = {"time": 2, "band": 3, "cells": ids.size}
    lat = 90.0 - np.degrees(hp.pix2ang(NSIDE, ids, nest=nest)[0])
    return xr.DataArray(
        rng.normal(size=[shape[d] for d in dims]), dims=dims, name="sst", attrs={"units": "K"},
        coords={"cell_ids": cell_coordinate(NSIDE, ids, nest), "time": [10, 20], "band": ["a", "b", "c"],
                "lat": ("cells", lat)},
    )


def test_import_foscat_core_imports_no_xarray():
    code = "import sys, foscat_core, foscat_core.xarray_io; print([m for m in ('xarray', 'xdggs', 'dask') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("where", ["coordinate", "dataarray"])
def test_grid_read_from_attrs(where, rng):
    ids = _ids(rng, nest=False)
    attrs = {"grid_name": "healpix", "nside": NSIDE, "indexing_scheme": "ring"}
    coord_attrs, da_attrs = (attrs, {}) if where == "coordinate" else ({}, attrs)
    da = xr.DataArray(np.zeros((2, ids.size)), dims=("t", "pix"), attrs=da_attrs,
                      coords={"cell_ids": ("pix", ids, coord_attrs)})
    grid = grid_of(da)
    assert (grid.nside, grid.nest, grid.cell_dim) == (NSIDE, False, "pix")
    np.testing.assert_array_equal(grid.cell_ids, ids)
    np.testing.assert_array_equal(grid.nested_ids, hp.ring2nest(NSIDE, ids))


def test_grid_of_xdggs_decoded_and_zarr_round_trip(tmp_path, rng):
    xdggs = pytest.importorskip("xdggs")
    pytest.importorskip("zarr")
    ids = _ids(rng, nest=False)
    ds = _map(rng, ids, nest=False).drop_vars("band").to_dataset()  # no string labels in zarr v3
    decoded = xdggs.decode(ds)
    assert decoded.cell_ids.attrs == {}  # xdggs keeps the grid in its index once decoded
    grid = grid_of(decoded["sst"])
    assert (grid.nside, grid.nest) == (NSIDE, False)
    ds.to_zarr(tmp_path / "sst.zarr", consolidated=False)
    lazy = xr.open_zarr(tmp_path / "sst.zarr", consolidated=False)["sst"]
    grid = grid_of(lazy)
    assert (grid.nside, grid.nest, grid.cell_dim) == (NSIDE, False, "cells")
    np.testing.assert_array_equal(grid.cell_ids, ids)


@pytest.mark.parametrize("attrs, match", [
    ({"grid_name": "healpix", "level": 3, "indexing_scheme": "zuniq"}, "indexing_scheme must be 'nested' or 'ring'"),
    ({"grid_name": "h3", "level": 3}, "grid_name must be 'healpix', got 'h3'"),
    ({"level": 3}, "grid_name must be 'healpix', got None"),
    ({"grid_name": "healpix"}, "need 'level'"),
    ({"grid_name": "healpix", "level": 2}, r"x.cell_ids must lie in \[0, 191\]"),
])
def test_grid_errors(attrs, match):
    da = xr.DataArray(np.zeros(NPIX), dims="cells", coords={"cell_ids": ("cells", np.arange(NPIX), attrs)})
    with pytest.raises(ValueError, match=match):
        grid_of(da)


def test_no_cell_ids_coordinate_is_named():
    da = xr.DataArray(np.zeros((2, NPIX)), dims=("t", "cells"))
    with pytest.raises(ValueError, match="x has no 'cell_ids' coordinate"):
        fc.down(da, mode="max")
    with pytest.raises(ValueError, match="no 'cell_ids' coordinate"):
        fc.SphericalStencil(NSIDE, 3, backend="numpy").conv(da.expand_dims("b"), np.zeros((2, 1, 9)))


@pytest.mark.parametrize("nest", [True, False])
def test_conv_dataarray_in_dataarray_out(backend_name, nest, rng):
    ids = _ids(rng, nest)
    da = _map(rng, ids, nest, dims=("cells", "time", "band"))  # cells first: moved last, then back
    w = rng.normal(size=(3, 4, 9))
    st = fc.SphericalStencil(NSIDE, 3, cell_ids=ids, nest=nest, backend=backend_name, dtype="float64")
    out = st.conv(da, w)
    assert isinstance(out, xr.DataArray) and out.dims == da.dims and out.sizes["band"] == 4
    assert out.name == "sst" and out.attrs == da.attrs
    assert set(out.coords) == {"cell_ids", "time", "lat"}  # band labels no longer fit 4 channels
    for name in ("cell_ids", "time", "lat"):
        xr.testing.assert_identical(out[name], da[name])
    ref = fc.SphericalStencil(NSIDE, 3, cell_ids=ids, nest=nest, backend="numpy", dtype="float64")
    expected = ref.conv(da.transpose("time", "band", "cells").values, w)
    assert_close(out.transpose("time", "band", "cells").values, expected, "float64")


def test_conv_dataarray_on_another_grid_is_refused(rng):
    ids = _ids(rng)
    st = fc.SphericalStencil(NSIDE, 3, cell_ids=ids, backend="numpy")
    da = _map(rng, ids[::-1].copy())
    with pytest.raises(ValueError, match="must be the stencil's"):
        st.conv(da, np.zeros((3, 1, 9)))
    # the same cells given as RING ids in the same order are the same grid
    same = _map(rng, hp.nest2ring(NSIDE, ids), nest=False)
    assert st.conv(same, np.zeros((3, 1, 9), "float32")).sizes["band"] == 1


@pytest.mark.parametrize("nest", [True, False])
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_down_dataarray(backend_name, nest, mode, rng):
    ids = _ids(rng, nest)
    da = _map(rng, ids, nest)
    out, parents = fc.down(da, mode=mode, backend=backend_name)
    ref, ref_parents = fc.down(da.values, NSIDE, ids, mode=mode, nest=nest, backend="numpy")
    np.testing.assert_array_equal(parents, ref_parents)
    np.testing.assert_array_equal(out.cell_ids.values, ref_parents)
    assert out.cell_ids.attrs == grid_attrs(NSIDE // 2, nest)
    assert out.dims == da.dims and "lat" not in out.coords
    xr.testing.assert_identical(out.time, da.time)
    xr.testing.assert_identical(out.band, da.band)
    np.testing.assert_allclose(out.values, ref, rtol=1e-6)
    back = fc.up(out, target_ids=ids, backend=backend_name)
    assert back.cell_ids.attrs == grid_attrs(NSIDE, nest)
    np.testing.assert_array_equal(back.cell_ids.values, ids)
    np.testing.assert_allclose(back.values, fc.up(ref, NSIDE // 2, ref_parents, ids, nest=nest, backend="numpy"),
                               rtol=1e-6)


def test_down_decoded_xdggs_map_stays_decoded(rng):
    xdggs = pytest.importorskip("xdggs")
    ids = _ids(rng, nest=True)
    decoded = xdggs.decode(_map(rng, ids).to_dataset())["sst"]
    out, _ = fc.down(decoded, mode="mean", backend="numpy")
    assert out.dggs.grid_info.level == int(np.log2(NSIDE)) - 1
    assert grid_of(out).nside == NSIDE // 2


def test_conflicting_grid_arguments(rng):
    ids = _ids(rng, nest=False)
    da = _map(rng, ids, nest=False)
    with pytest.raises(ValueError, match="nside=16 conflicts"):
        fc.down(da, 16)
    with pytest.raises(ValueError, match="nest=True conflicts"):
        fc.up(da, nest=True)
    with pytest.raises(ValueError, match="cell_ids conflicts"):
        fc.down(da, cell_ids=ids[::-1])
    out, _ = fc.down(da, NSIDE, ids, nest=False, backend="numpy")  # agreeing arguments are fine
    assert out.sizes["cells"] > 0


def test_like_and_cell_coordinate():
    da = xr.DataArray(np.ones((48, 2)), dims=("cells", "t"), attrs={"grid_name": "healpix", "level": 1},
                      coords={"cell_ids": ("cells", np.arange(48)), "t": [1, 2]})
    out = like(da, np.zeros((2, 12)), "cells", cell_ids=np.arange(12), nside=1, nest=True)
    assert out.dims == ("cells", "t") and out.attrs["level"] == 0
    assert out.cell_ids.attrs == {"grid_name": "healpix", "level": 0, "indexing_scheme": "nested"}
    with pytest.raises(ValueError, match="do not match dims"):
        like(da, np.zeros(48), "cells")


def test_synthesis_run_dataarray_start(rng):
    torch = pytest.importorskip("torch")
    from foscat_core.synthesis import Loss, Synthesis

    ids = _ids(rng, nest=False)
    da = _map(rng, ids, nest=False, dims=("cells", "time", "band"))
    target = np.arange(ids.size, dtype=np.float64)

    def loss(x, op, args):  # the losses see the cells last
        return torch.sum((x - torch.as_tensor(target, dtype=x.dtype)) ** 2)

    out = Synthesis([Loss(loss, None, backend="torch")], verbose=False).run(da, NUM_EPOCHS=30)
    assert isinstance(out, xr.DataArray) and out.dims == da.dims
    xr.testing.assert_identical(out.coords.to_dataset(), da.coords.to_dataset())
    np.testing.assert_allclose(out.transpose("time", "band", "cells").values,
                               np.broadcast_to(target, (2, 3, ids.size)), atol=1e-6)


def test_plots_take_dataarrays(rng):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from foscat_core import plot

    ids = _ids(rng, nest=False)
    da = _map(rng, ids, nest=False).isel(time=0)  # (band, cells)
    ref = plot.show_map(da.values[1], NSIDE, ids, nest=False, xsize=100).axes[0].images[0].get_array()
    img = plot.show_map(da.isel(band=1), xsize=100).axes[0].images[0].get_array()
    np.testing.assert_array_equal(img.filled(0), ref.filled(0))
    fig = plot.show_maps(da, xsize=100)
    assert len([ax for ax in fig.axes if ax.images]) == 3
    with pytest.raises(ValueError, match="not on the same cells"):
        plot.show_maps([da.isel(band=0), da.isel(band=1).isel(cells=slice(None, None, -1))])
    plt.close("all")
