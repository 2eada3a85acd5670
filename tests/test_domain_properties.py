"""Property tests (hypothesis) of the NESTED pyramid geometry: Domain, down and up (NumPy backend)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import foscat_core as fc

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NSIDES = st.sampled_from([2, 4, 8, 16, 32, 64])


@st.composite
def domains(draw, min_nside=2):
    """(nside, ids): a random subset of cells in random order, sometimes whole sibling groups."""
    nside = draw(NSIDES.filter(lambda n: n >= min_nside))
    npix = 12 * nside * nside
    kind = draw(st.sampled_from(["subset", "groups", "full_shuffled"]))
    if kind == "subset":
        ids = draw(st.lists(st.integers(0, npix - 1), min_size=1, max_size=min(npix, 300), unique=True))
        return nside, np.asarray(ids, dtype=np.int64)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "groups":  # whole sibling groups, sorted (the contiguous reshape path) or shuffled
        n_par = draw(st.integers(1, min(npix // 4, 64)))
        parents = np.sort(rng.choice(npix // 4, size=n_par, replace=False))
        ids = (parents[:, None] * 4 + np.arange(4)).reshape(-1)
        if draw(st.booleans()):
            ids = rng.permutation(ids)
        return nside, ids.astype(np.int64)
    return nside, rng.permutation(npix).astype(np.int64)


def _maps(ids, rng, shape=(2,)):
    return rng.normal(size=shape + (ids.size,))


# ---- Domain ---------------------------------------------------------------------------------

@SETTINGS
@given(domains())
def test_domain_keeps_order_and_dtype(case):
    nside, ids = case
    d = fc.Domain(nside, ids)
    assert d.nside == nside and d.npix == 12 * nside * nside
    assert d.cell_ids.dtype == np.int64
    np.testing.assert_array_equal(d.cell_ids, ids)
    assert len(d) == d.n_cells == ids.size
    assert d.is_full_sky == bool(ids.size == d.npix and np.all(ids == np.arange(d.npix)))
    # Any integer dtype and a list give the same domain.
    np.testing.assert_array_equal(fc.Domain(nside, ids.astype(np.int32)).cell_ids, ids)
    np.testing.assert_array_equal(fc.Domain(nside, ids.tolist()).cell_ids, ids)


@SETTINGS
@given(domains())
def test_parent_is_unique_quarter(case):
    nside, ids = case
    parent = fc.Domain(nside, ids).parent()
    assert parent.nside == nside // 2
    np.testing.assert_array_equal(parent.cell_ids, np.unique(ids // 4))
    assert parent.cell_ids.dtype == np.int64


@SETTINGS
@given(domains(), st.integers(0, 2**32 - 1))
def test_locate_round_trips(case, seed):
    nside, ids = case
    d = fc.Domain(nside, ids)
    rng = np.random.default_rng(seed)
    # Present ids: positions point back at them, in any query order and shape.
    query = rng.permutation(ids)
    pos, present = d.locate(query)
    assert present.all()
    np.testing.assert_array_equal(d.cell_ids[pos], query)
    pos2, present2 = d.locate(ids.reshape(-1, 1))
    assert pos2.shape == present2.shape == (ids.size, 1)
    np.testing.assert_array_equal(pos2[:, 0], np.arange(ids.size))
    # Absent ids (and ids out of range) are flagged, with position 0.
    absent = np.setdiff1d(np.arange(d.npix), ids)[:50]
    probe = np.concatenate([absent, [-1, d.npix, d.npix + 7]])
    pos3, present3 = d.locate(probe)
    assert not present3.any()
    assert (pos3 == 0).all()


@SETTINGS
@given(domains())
def test_child_table(case):
    nside, ids = case
    fine = fc.Domain(nside, ids)
    parent = fine.parent()
    table, present = fine.child_table(parent)
    assert table.shape == present.shape == (parent.n_cells, 4)
    kids = parent.cell_ids[:, None] * 4 + np.arange(4)
    # Present entries point at exactly that child; the mask is exactly "child is in the domain".
    np.testing.assert_array_equal(present, np.isin(kids, ids))
    np.testing.assert_array_equal(fine.cell_ids[table[present]], kids[present])
    assert (table[~present] == 0).all()
    # Every fine cell appears exactly once in the table, every parent has at least one child.
    assert present.sum() == ids.size
    np.testing.assert_array_equal(np.sort(table[present]), np.arange(ids.size))
    assert present.any(axis=1).all()


@SETTINGS
@given(domains(), st.integers(0, 2**32 - 1))
def test_children_round_trip(case, seed):
    nside, ids = case
    coarse = fc.Domain(nside, ids)
    kids = coarse.children()
    assert kids.nside == 2 * nside
    np.testing.assert_array_equal(kids.cell_ids, (ids[:, None] * 4 + np.arange(4)).reshape(-1))
    np.testing.assert_array_equal(kids.parent().cell_ids, np.unique(ids))
    table, present = kids.child_table(kids.parent())
    assert present.all()


# ---- down / up ------------------------------------------------------------------------------

@SETTINGS
@given(domains())
def test_down_mean_of_parent_id_map_gives_parent_ids(case):
    nside, ids = case
    for mode in ("mean", "max"):
        y, parent_ids = fc.down((ids // 4).astype(np.float64), nside, cell_ids=ids, mode=mode, backend="numpy")
        np.testing.assert_array_equal(parent_ids, np.unique(ids // 4))
        np.testing.assert_array_equal(y, parent_ids.astype(np.float64))


@SETTINGS
@given(domains(), st.integers(0, 2**32 - 1))
def test_down_matches_brute_force(case, seed):
    nside, ids = case
    x = _maps(ids, np.random.default_rng(seed), shape=(2, 3))
    y_max, pids = fc.down(x, nside, cell_ids=ids, mode="max", backend="numpy")
    y_mean, pids2 = fc.down(x, nside, cell_ids=ids, mode="mean", backend="numpy")
    np.testing.assert_array_equal(pids, pids2)
    assert y_max.shape == y_mean.shape == (2, 3, pids.size)
    order = np.argsort(ids // 4, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff((ids // 4)[order])) + 1)
    brute_max = np.stack([x[..., g].max(axis=-1) for g in groups], axis=-1)
    brute_mean = np.stack([x[..., g].mean(axis=-1) for g in groups], axis=-1)
    np.testing.assert_array_equal(y_max, brute_max)
    np.testing.assert_allclose(y_mean, brute_mean, rtol=1e-13, atol=1e-13)
    assert (y_max >= y_mean - 1e-12).all()


@SETTINGS
@given(domains(), st.integers(0, 2**32 - 1))
def test_down_ignores_cell_order(case, seed):
    nside, ids = case
    rng = np.random.default_rng(seed)
    x = _maps(ids, rng)
    perm = rng.permutation(ids.size)
    for mode in ("max", "mean"):
        y, pids = fc.down(x, nside, cell_ids=ids, mode=mode, backend="numpy")
        y2, pids2 = fc.down(x[..., perm], nside, cell_ids=ids[perm], mode=mode, backend="numpy")
        np.testing.assert_array_equal(pids, pids2)
        np.testing.assert_allclose(y, y2, rtol=1e-14, atol=1e-14)


@SETTINGS
@given(domains(), st.integers(0, 2**32 - 1))
def test_up_then_down_is_identity_on_parents(case, seed):
    """A parent-constant map (up of a coarse map onto any set of children) goes back down to the
    coarse values of the parents that have a child there, in max and in mean."""
    fine_nside, fine_ids = case
    rng = np.random.default_rng(seed)
    coarse_ids = rng.permutation(np.unique(fine_ids // 4))
    z = _maps(coarse_ids, rng)
    fine = fc.up(z, fine_nside // 2, cell_ids=coarse_ids, target_ids=fine_ids, backend="numpy")
    assert fine.shape == (2, fine_ids.size)
    pos = np.argsort(coarse_ids)
    np.testing.assert_array_equal(fine, z[..., pos[np.searchsorted(coarse_ids[pos], fine_ids // 4)]])
    for mode in ("max", "mean"):
        back, pids = fc.down(fine, fine_nside, cell_ids=fine_ids, mode=mode, backend="numpy")
        np.testing.assert_array_equal(pids, np.sort(coarse_ids))
        np.testing.assert_allclose(back, z[..., pos], rtol=1e-14, atol=0)


@SETTINGS
@given(domains(), st.integers(0, 2**32 - 1))
def test_up_default_targets_then_down_is_identity(case, seed):
    """up with target_ids=None fills all 4 children of each coarse cell, coarse cell by coarse cell;
    down on those children gives the coarse map back (sorted by id)."""
    nside, ids = case
    if nside > 32:
        nside, ids = nside // 2, np.unique(ids // 4)
    rng = np.random.default_rng(seed)
    x = _maps(ids, rng)
    full = ids.size == 12 * nside * nside and np.all(ids == np.arange(ids.size))
    cell_ids = None if full else ids
    fine = fc.up(x, nside, cell_ids=cell_ids, backend="numpy")
    assert fine.shape == (2, 4 * ids.size)
    np.testing.assert_array_equal(fine, np.repeat(x, 4, axis=-1))
    fine_ids = fc.Domain(nside, cell_ids).children().cell_ids
    order = np.argsort(ids)
    for mode in ("max", "mean"):
        back, pids = fc.down(fine, 2 * nside, cell_ids=None if full else fine_ids, mode=mode, backend="numpy")
        np.testing.assert_array_equal(pids, ids[order])
        np.testing.assert_allclose(back, x[..., order], rtol=1e-14, atol=0)


@SETTINGS
@given(domains(), st.integers(0, 2**32 - 1))
def test_down_up_is_projection(case, seed):
    """P = up(down(.)) is idempotent on the domain: P(P(x)) == P(x), for max and mean."""
    nside, ids = case
    x = _maps(ids, np.random.default_rng(seed))

    def project(v, mode):
        y, pids = fc.down(v, nside, cell_ids=ids, mode=mode, backend="numpy")
        return fc.up(y, nside // 2, cell_ids=pids, target_ids=ids, backend="numpy")

    for mode in ("max", "mean"):
        once = project(x, mode)
        np.testing.assert_allclose(project(once, mode), once, rtol=1e-14, atol=1e-14)
    # Mean projection preserves the sum over each parent's children; max projection dominates x.
    assert (project(x, "max") >= x).all()
    np.testing.assert_allclose(project(x, "mean").sum(axis=-1), x.sum(axis=-1), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(domains())
def test_full_sky_ids_given_explicitly_equal_none(case):
    nside, _ = case
    npix = 12 * nside * nside
    x = np.random.default_rng(nside).normal(size=(npix,))
    for mode in ("max", "mean"):
        a, pa = fc.down(x, nside, mode=mode, backend="numpy")
        b, pb = fc.down(x, nside, cell_ids=np.arange(npix), mode=mode, backend="numpy")
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(a, b)
