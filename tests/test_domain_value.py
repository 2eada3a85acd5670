"""The Domain value: immutable, checked once at the edge, its coarser levels computed once."""

import copy
import pickle

import numpy as np
import pytest

import foscat_core as fc
from foscat_core.domain import Domain
from foscat_core.ordering import as_domain
from foscat_core.pyramid_ops import DownPlan, UpPlan


def test_domain_is_immutable_and_leaves_the_callers_array_alone():
    ids = np.array([7, 1, 2, 3], dtype=np.int64)
    d = Domain(2, ids)
    with pytest.raises(AttributeError, match="immutable"):
        d.nside = 4
    with pytest.raises(ValueError, match="read-only"):
        d.cell_ids[0] = 0
    ids[0] = 40  # the caller's array is still writable, and the domain does not see the change
    assert ids.flags.writeable and d.cell_ids[0] == 7


def test_parent_children_and_pyramid_are_computed_once():
    d = Domain(8, np.arange(200, 100, -1))
    assert d.parent() is d.parent() and d.children() is d.children()
    levels = d.pyramid(4)
    assert levels == d.pyramid(4) and levels[0] is d and levels[2] is d.parent().parent()
    assert [lv.nside for lv in levels] == [8, 4, 2, 1]
    np.testing.assert_array_equal(levels[1].cell_ids, np.unique(np.arange(101, 201) // 4))
    np.testing.assert_array_equal(levels[3].cell_ids, [1, 2, 3])
    with pytest.raises(ValueError, match="n_levels=5 needs nside >= 16, got 8"):
        d.pyramid(5)
    with pytest.raises(ValueError, match="n_levels must be a positive integer"):
        d.pyramid(0)


def test_locate_on_a_sorted_parent_matches_an_argsort_lookup():
    fine = Domain(16, np.random.default_rng(0).permutation(np.arange(300, 1500)))
    parent = fine.parent()  # ascending: looked up without an argsort
    probe = np.array([-1, 0, 75, 76, 200, 374, 375, 3071])
    pos, present = parent.locate(probe)
    ref_pos, ref_present = Domain(8, parent.cell_ids.copy()).locate(probe)  # a user domain: argsorted
    np.testing.assert_array_equal(present, ref_present)
    np.testing.assert_array_equal(pos, ref_pos)
    assert present.tolist() == [False, False, True, True, True, True, False, False]


def test_pickle_and_copy_keep_the_ids_and_drop_the_caches():
    d = Domain(4, [9, 3, 5])
    d.parent()
    for clone in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d)):
        np.testing.assert_array_equal(clone.cell_ids, d.cell_ids)
        assert not clone.cell_ids.flags.writeable and clone.__dict__["_parent"] is None
        np.testing.assert_array_equal(clone.parent().cell_ids, [0, 1, 2])
        with pytest.raises(AttributeError):
            clone.nside = 2


def test_as_domain_checks_once_and_passes_domains_through():
    d = as_domain(2, [0, 4, 13], nest=False)
    np.testing.assert_array_equal(d.cell_ids, [3, 2, 0])
    assert as_domain(d) is d
    with pytest.raises(ValueError, match="cell_ids must be None when a Domain is given"):
        as_domain(d, [1, 2])
    with pytest.raises(TypeError, match="nest must be True"):
        as_domain(d, nest="yes")
    with pytest.raises(ValueError, match="target_ids must be unique"):
        as_domain(2, [1, 1], name="target_ids")
    full_ring = as_domain(2, None, nest=False)
    assert not full_ring.is_full_sky and full_ring.n_cells == 48


def test_stencil_and_plans_accept_a_domain():
    ids = np.random.default_rng(1).permutation(np.arange(40, 140))
    d = Domain(4, ids)
    st = fc.SphericalStencil(d, 3, backend="numpy", dtype="float64")
    ref = fc.SphericalStencil(4, 3, cell_ids=ids, backend="numpy", dtype="float64")
    assert st.domain is d
    np.testing.assert_array_equal(st.index, ref.index)
    np.testing.assert_array_equal(st.weight, ref.weight)
    down = DownPlan(d)
    assert down.domain is d and down.parent is d.parent()
    up = UpPlan(d.parent(), None, d)
    x = np.random.default_rng(2).normal(size=(2, d.n_cells))
    np.testing.assert_array_equal(up(down(x, "mean", "numpy"), "numpy"), UpPlan(2, down.parent_ids, ids)(
        fc.down(x, 4, ids, mode="mean", backend="numpy")[0], "numpy"))
    with pytest.raises(ValueError, match="target_ids: a Domain at nside 4 was expected, got nside 2"):
        UpPlan(d.parent(), None, d.parent())
    with pytest.raises(ValueError, match="cell_ids must be None when a Domain is given"):
        fc.SphericalStencil(d, 3, cell_ids=ids, backend="numpy")


def test_down_returns_ids_the_caller_may_change():
    _, parents = fc.down(np.zeros(48), 2, backend="numpy")
    parents[0] = -1  # a writable copy: the cached parent domain is untouched
    _, again = fc.down(np.zeros(48), 2, backend="numpy")
    assert again[0] == 0
