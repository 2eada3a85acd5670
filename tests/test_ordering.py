"""RING ids at the edge (``nest=False``): every op equals the NESTED computation reordered by healpy."""

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from foscat_core.ordering import nested_cell_ids, user_cell_ids

from conftest import assert_close

NSIDE = 8
NPIX = 12 * NSIDE * NSIDE


def _to_ring(x):
    """healpy's NESTED -> RING reorder of every map of an (..., Npix) array."""
    x = np.asarray(x)
    return np.asarray(hp.reorder(x.reshape(-1, x.shape[-1]), n2r=True)).reshape(x.shape)


def _region(rng):
    """A regional NESTED domain in a scrambled order, and the same cells as RING ids."""
    ids = hp.query_disc(NSIDE, hp.ang2vec(1.1, 0.7), np.radians(40), nest=True)
    ids = rng.permutation(ids).astype(np.int64)
    return ids, hp.nest2ring(NSIDE, ids).astype(np.int64)


def test_ordering_helpers_match_healpy(rng):
    ring = rng.permutation(NPIX)[:50]
    nested = nested_cell_ids(NSIDE, ring, nest=False)
    np.testing.assert_array_equal(nested, hp.ring2nest(NSIDE, ring))
    np.testing.assert_array_equal(user_cell_ids(NSIDE, nested, nest=False), ring)
    full = nested_cell_ids(NSIDE, None, nest=False)
    x = rng.normal(size=NPIX)
    # the full-sky RING cell axis: value k of a RING map sits on NESTED cell full[k]
    np.testing.assert_array_equal(hp.reorder(x, n2r=True), x[full])
    assert nested_cell_ids(NSIDE, None, nest=True) is None


def test_conv_full_sky_ring_equals_reordered_nested(backend_name, dtype, rng):
    x = rng.normal(size=(2, 2, NPIX))
    w = rng.normal(size=(2, 3, 9))
    ref = fc.SphericalStencil(NSIDE, 3, n_gauges=2, backend="numpy", dtype="float64").conv(x, w)
    st = fc.SphericalStencil(NSIDE, 3, nest=False, n_gauges=2, backend=backend_name, dtype=dtype)
    y = st.conv(_to_ring(x).astype(dtype), w.astype(dtype))
    assert_close(y, _to_ring(ref), dtype)
    np.testing.assert_array_equal(st.user_cell_ids, np.arange(NPIX))


def test_conv_regional_ring_equals_nested(backend_name, dtype, rng):
    ids, ring = _region(rng)
    x = rng.normal(size=(1, 2, ids.size))
    w = rng.normal(size=(2, 2, 25))
    ref = fc.SphericalStencil(NSIDE, 5, cell_ids=ids, backend="numpy", dtype="float64").conv(x, w)
    st = fc.SphericalStencil(NSIDE, 5, cell_ids=ring, nest=False, backend=backend_name, dtype=dtype)
    assert_close(st.conv(x.astype(dtype), w.astype(dtype)), ref, dtype)
    np.testing.assert_array_equal(st.user_cell_ids, ring)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_down_full_sky_ring_equals_reordered_nested(backend_name, dtype, mode, rng):
    x = rng.normal(size=(2, 3, NPIX))
    ref, _ = fc.down(x, NSIDE, mode=mode, backend="numpy")
    y, parents = fc.down(_to_ring(x).astype(dtype), NSIDE, mode=mode, nest=False, backend=backend_name)
    np.testing.assert_array_equal(parents, np.arange(12 * (NSIDE // 2) ** 2))
    assert_close(y, _to_ring(ref), dtype)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_down_regional_ring_parents_ascending(backend_name, dtype, mode, rng):
    ids, ring = _region(rng)
    x = rng.normal(size=(2, ids.size))
    ref, ref_parents = fc.down(x, NSIDE, ids, mode=mode, backend="numpy")
    y, parents = fc.down(x.astype(dtype), NSIDE, ring, mode=mode, nest=False, backend=backend_name)
    ring_parents = hp.nest2ring(NSIDE // 2, ref_parents)
    order = np.argsort(ring_parents)
    np.testing.assert_array_equal(parents, ring_parents[order])
    assert np.all(np.diff(parents) > 0)
    assert_close(y, ref[:, order], dtype)


def test_up_ring_equals_nested(backend_name, dtype, rng):
    coarse = NSIDE // 2
    x = rng.normal(size=(2, 12 * coarse * coarse))
    ref = fc.up(x, coarse, backend="numpy")  # NESTED children, coarse cell by coarse cell = ascending
    y = fc.up(_to_ring(x).astype(dtype), coarse, nest=False, backend=backend_name)
    assert_close(y, _to_ring(ref), dtype)
    # explicit RING targets, any order, kept
    targets = rng.permutation(NPIX)[:40]
    y = fc.up(_to_ring(x).astype(dtype), coarse, target_ids=targets, nest=False, backend=backend_name)
    assert_close(y, ref[..., hp.ring2nest(NSIDE, targets)], dtype)


def test_plans_report_ring_ids(rng):
    ids, ring = _region(rng)
    plan = fc.pyramid_ops.DownPlan(NSIDE, ring, nest=False)
    up_plan = fc.pyramid_ops.UpPlan(NSIDE // 2, plan.parent_ids, nest=False)
    assert np.all(np.diff(up_plan.target_ids) > 0)
    children = np.unique(hp.ring2nest(NSIDE // 2, plan.parent_ids)[:, None] * 4 + np.arange(4))
    np.testing.assert_array_equal(np.sort(up_plan.target_ids), np.sort(hp.nest2ring(NSIDE, children)))


@pytest.mark.parametrize("call", [
    lambda: fc.SphericalStencil(NSIDE, 3, cell_ids=[0, NPIX], nest=False),
    lambda: fc.down(np.zeros(2), NSIDE, [-1, 3], nest=False, backend="numpy"),
    lambda: fc.up(np.zeros(2), NSIDE, [0, 12 * NSIDE**2 + 5], nest=False, backend="numpy"),
])
def test_ring_ids_out_of_range_name_cell_ids(call):
    with pytest.raises(ValueError, match="cell_ids must lie in"):
        call()


def test_up_ring_target_without_parent_names_ring_ids():
    with pytest.raises(ValueError, match=r"target_ids: 1 id\(s\).*e\.g\. 0 "):
        fc.up(np.zeros(1), 1, [11], target_ids=[0], nest=False, backend="numpy")


def test_nest_must_be_a_bool():
    with pytest.raises(TypeError, match="nest must be True"):
        fc.SphericalStencil(NSIDE, 3, nest="ring")
    with pytest.raises(TypeError, match="nest must be True"):
        fc.down(np.zeros(NPIX), NSIDE, nest=0, backend="numpy")


def test_show_map_ring_draws_the_nested_picture(rng):
    pytest.importorskip("matplotlib")
    from foscat_core import plot

    x = rng.normal(size=NPIX)
    nested_img = plot.show_map(x, NSIDE, colorbar=False, xsize=200).axes[0].images[0].get_array()
    ring_img = plot.show_map(hp.reorder(x, n2r=True), NSIDE, nest=False, colorbar=False,
                             xsize=200).axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(ring_img), np.ma.getmaskarray(nested_img))
    np.testing.assert_array_equal(ring_img.filled(0), nested_img.filled(0))
    ids, ring = _region(rng)
    region = rng.normal(size=ids.size)
    a = plot.show_maps([region], NSIDE, ids, xsize=100).axes[0].images[0].get_array()
    b = plot.show_maps([region], NSIDE, ring, nest=False, xsize=100).axes[0].images[0].get_array()
    np.testing.assert_array_equal(a.filled(0), b.filled(0))
    import matplotlib.pyplot as plt

    plt.close("all")
