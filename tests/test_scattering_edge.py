"""The scattering operator's edge: RING maps (checked against healpy.reorder), xarray DataArrays,
an operator bound to a domain, and maps with missing values."""

import healpy as hp
import numpy as np
import pytest

from conftest import BACKENDS, cached_funct, to_numpy
from foscat_core.scattering import funct

NSIDE = 8
NPIX = 12 * NSIDE**2


def get_op(backend, **kw):
    return cached_funct(backend, KERNELSZ=3, NORIENT=2, **kw)


def assert_same_stats(actual, reference, rtol=1e-9):
    a, r = actual.numpy(), reference.numpy()
    assert a.keys() == r.keys()
    for name in r:
        scale = float(np.max(np.abs(r[name])))
        np.testing.assert_allclose(a[name], r[name], rtol=rtol, atol=rtol * scale, err_msg=name)


def ring_case(region):
    """(NESTED kwargs, RING kwargs) of the same maps and mask: full sky or a disc."""
    rng = np.random.default_rng(3)
    m_nest = rng.normal(size=(2, NPIX)) + 0.2
    y_nest = 0.5 * m_nest + rng.normal(size=(2, NPIX))
    w_nest = rng.uniform(size=(2, NPIX))
    m_ring, y_ring, w_ring = (hp.reorder(a, n2r=True) for a in (m_nest, y_nest, w_nest))
    if not region:
        return dict(x=m_nest, y=y_nest, mask=w_nest), dict(x=m_ring, y=y_ring, mask=w_ring)
    centre, radius = hp.ang2vec(1.0, 2.0), np.radians(50)
    ids_nest = hp.query_disc(NSIDE, centre, radius, nest=True)
    ids_ring = hp.query_disc(NSIDE, centre, radius, nest=False)  # another cell order than ids_nest
    nest_kw = dict(x=m_nest[:, ids_nest], y=y_nest[:, ids_nest], mask=w_nest[:, ids_nest], cell_ids=ids_nest,
                   nside=NSIDE)
    ring_kw = dict(x=m_ring[:, ids_ring], y=y_ring[:, ids_ring], mask=w_ring[:, ids_ring], cell_ids=ids_ring,
                   nside=NSIDE)
    return nest_kw, ring_kw


@pytest.mark.parametrize("region", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_ring_equals_nested_reordered(backend_name, region, cross):
    nest_kw, ring_kw = ring_case(region)
    if not cross:
        del nest_kw["y"], ring_kw["y"]
    reference = get_op("numpy").eval(**nest_kw, norm="self")
    by_eval = get_op(backend_name).eval(**ring_kw, nest=False, norm="self")
    by_operator = get_op(backend_name, nest=False).eval(**ring_kw, norm="self")
    assert_same_stats(by_eval, reference)
    assert_same_stats(by_operator, reference)
    assert by_eval.settings["nest"] is False and reference.settings["nest"] is True
    # the same domain and mask, whatever their ordering and cell order
    for key in ("cells_hash", "mask_hash", "n_cells"):
        assert by_eval.settings[key] == reference.settings[key], key
    # without mask the cell order matters too: compare unmasked
    del nest_kw["mask"], ring_kw["mask"]
    assert_same_stats(get_op(backend_name).eval(**ring_kw, nest=False), get_op("numpy").eval(**nest_kw))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_ring_gradient_is_the_nested_gradient_reordered(backend):
    nest_kw, ring_kw = ring_case(region=False)
    ref_nest = get_op(backend).eval(nest_kw["y"])

    def grad(op, x, ref):
        def loss(u):
            st = op.eval(u)
            return st.reduce_mean_batch((st - ref) ** 2)

        return to_numpy(op.backend.value_and_grad(loss, op.backend.asarray(x, dtype="float64"))[1])

    g_nest = grad(get_op(backend), nest_kw["x"], ref_nest)
    g_ring = grad(get_op(backend, nest=False), ring_kw["x"], ref_nest)
    np.testing.assert_allclose(g_ring, hp.reorder(g_nest, n2r=True), rtol=1e-9, atol=1e-12 * np.abs(g_nest).max())


def test_operator_bound_to_a_domain():
    ids_ring = hp.query_disc(NSIDE, hp.ang2vec(0.7, 1.0), np.radians(45), nest=False)
    x = np.random.default_rng(4).normal(size=ids_ring.size)
    op = funct(KERNELSZ=3, NORIENT=2, nside=NSIDE, cell_ids=ids_ring, nest=False, backend="numpy")
    want = get_op("numpy").eval(x, cell_ids=ids_ring, nside=NSIDE, nest=False)
    assert_same_stats(op.eval(x), want)
    shuffled = np.random.default_rng(5).permutation(ids_ring.size)  # same cells, another order: allowed
    assert_same_stats(op.eval(x[shuffled], cell_ids=ids_ring[shuffled], nside=NSIDE), want)
    with pytest.raises(ValueError, match="other than the operator's"):
        op.eval(x[:-1], cell_ids=ids_ring[:-1], nside=NSIDE)
    with pytest.raises(ValueError, match="cells on its last axis"):
        op.eval(x[:-1])
    with pytest.raises(ValueError, match="nest=True conflicts"):
        op.eval(x, nest=True)
    with pytest.raises(ValueError, match="nside is required"):
        funct(cell_ids=ids_ring)
    with pytest.raises(TypeError, match="nest"):
        funct(nest="ring")
    with pytest.raises(ValueError, match="cell_ids"):  # RING ids out of range
        get_op("numpy").eval(x, cell_ids=ids_ring + NPIX, nside=NSIDE, nest=False)


# --- xarray --------------------------------------------------------------------------------


def healpix_da(values, ids, nest, dims=("time", "cells"), level=3):
    xr = pytest.importorskip("xarray")
    attrs = {"grid_name": "healpix", "level": level, "indexing_scheme": "nested" if nest else "ring"}
    coords = {"cell_ids": ("cells", np.asarray(ids), attrs)}
    if "time" in dims:
        coords["time"] = np.arange(values.shape[dims.index("time")])
    return xr.DataArray(values, dims=dims, coords=coords)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dataarray_maps_read_their_grid(backend):
    nest_kw, ring_kw = ring_case(region=True)
    reference = get_op("numpy").eval(nest_kw["x"], nest_kw["y"], mask=nest_kw["mask"], cell_ids=nest_kw["cell_ids"],
                                     nside=NSIDE)
    ids = ring_kw["cell_ids"]
    x = healpix_da(ring_kw["x"].T, ids, nest=False, dims=("cells", "time"))  # cells first: moved last
    y = healpix_da(ring_kw["y"], ids, nest=False)
    mask = healpix_da(ring_kw["mask"], ids, nest=False, dims=("row", "cells"))
    got = get_op(backend).eval(x, y, mask=mask)
    assert_same_stats(got, reference)
    assert got.S1.shape[:2] == (2, 2)  # batch from "time", mask rows from "row"
    assert x.dims == ("cells", "time")  # the user's DataArray is untouched
    # several leading dims are flattened into the batch, in C order
    stacked = healpix_da(np.stack([ring_kw["x"], ring_kw["x"][::-1]]), ids, nest=False, dims=("run", "time", "cells"))
    four = get_op(backend).eval(stacked)
    single = get_op(backend).eval(ring_kw["x"], cell_ids=ids, nside=NSIDE, nest=False)
    np.testing.assert_allclose(to_numpy(four.S1)[:2], to_numpy(single.S1), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(four.S1)[2:], to_numpy(single.S1)[::-1], rtol=1e-12)


def test_dataarray_full_sky_and_grid_errors():
    m = np.random.default_rng(6).normal(size=(2, NPIX))
    ring = hp.reorder(m, n2r=True)
    da = healpix_da(ring, np.arange(NPIX), nest=False)
    assert_same_stats(get_op("numpy").eval(da), get_op("numpy").eval(m))
    assert get_op("numpy").eval(da).settings["cells_hash"] == "full"
    with pytest.raises(ValueError, match="nest=True conflicts"):
        get_op("numpy").eval(da, nest=True)
    other = healpix_da(m, np.arange(NPIX), nest=True)
    with pytest.raises(ValueError, match="y's grid"):
        get_op("numpy").eval(da, other)
    with pytest.raises(ValueError, match="mask's grid"):
        get_op("numpy").eval(da, mask=other)
    bound = funct(KERNELSZ=3, NORIENT=2, nside=NSIDE, cell_ids=np.arange(100), backend="numpy")
    with pytest.raises(ValueError, match="other than the operator's"):
        bound.eval(da)
    zuniq = da.copy()
    zuniq.cell_ids.attrs["indexing_scheme"] = "zuniq"
    with pytest.raises(ValueError, match="zuniq"):
        get_op("numpy").eval(zuniq)
    with pytest.raises(ValueError, match="cell_ids"):
        get_op("numpy").eval(da.drop_vars("cell_ids"))


# --- missing values ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_values_are_refused_pointing_to_mask(backend):
    op = get_op(backend)
    x = np.random.default_rng(7).normal(size=(2, NPIX))
    bad = x.copy()
    bad[0, [3, 50]] = np.nan
    bad[1, 7] = np.inf
    for given in (bad, op.backend.asarray(bad, dtype="float64")):
        with pytest.raises(ValueError, match=r"x has 3 missing \(NaN or infinite\) cells .*mask="):
            op.eval(given)
    with pytest.raises(ValueError, match="y has 3 missing"):
        op.eval(x, bad)
    w = np.ones(NPIX)
    w[5] = np.nan
    with pytest.raises(ValueError, match="mask has 1 NaN"):
        op.eval(x, mask=w)
    # what the message recommends works: a finite fill with weight 0 there
    filled = np.where(np.isfinite(bad), bad, 0.0)
    st = op.eval(filled, mask=np.isfinite(bad))
    assert np.isfinite(to_numpy(st.flatten())).all()


def test_missing_values_fail_inside_a_tf_function():
    """Traced by tf.function the values are unknown: the finite check becomes a graph assertion
    carrying the message (it used to be skipped)."""
    tf = pytest.importorskip("tensorflow")
    op = get_op("tensorflow")
    x = np.random.default_rng(9).normal(size=(2, NPIX))
    ref = op.eval(x).mean_batch()
    loss = tf.function(lambda v: op.reduce_distance(op.eval(v), ref), autograph=False)
    assert float(loss(tf.constant(x))) == pytest.approx(float(op.reduce_distance(op.eval(x), ref)), rel=1e-12)
    bad = x.copy()
    bad[1, 4] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"x has missing \(NaN or infinite\) cells.*mask="):
        loss(tf.constant(bad))


def test_missing_values_in_a_dataarray():
    m = np.random.default_rng(8).normal(size=(1, NPIX))
    m[0, :10] = np.nan
    with pytest.raises(ValueError, match="x has 10 missing"):
        get_op("numpy").eval(healpix_da(m, np.arange(NPIX), nest=True))
