"""down / up on the NESTED pyramid, checked against reshapes and brute-force loops."""

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from conftest import assert_close


def _disc_ids(nside):
    """A 25-degree disc from healpy, shuffled (outputs must follow any order)."""
    vec = hp.ang2vec(np.radians(60.0), np.radians(30.0))
    ids = hp.query_disc(nside, vec, np.radians(25.0), nest=True).astype(np.int64)
    return np.random.default_rng(7).permutation(ids)


def test_down_up_full_sky_are_reshapes(backend_name, dtype):
    nside = 8
    npix = 12 * nside * nside
    bk = fc.get_backend(backend_name)
    x = np.random.default_rng(2).normal(size=(2, 3, npix)).astype(dtype)
    quads = x.astype(np.float64).reshape(2, 3, -1, 4)
    for mode, ref in (("max", quads.max(-1)), ("mean", quads.mean(-1))):
        y, parent_ids = fc.down(bk.asarray(x), nside, mode=mode, backend=backend_name)
        np.testing.assert_array_equal(parent_ids, np.arange(npix // 4))
        assert_close(y, ref, dtype)
    coarse = x[..., : npix // 4]
    z = fc.up(bk.asarray(coarse), nside // 2, backend=backend_name)
    assert_close(z, np.repeat(coarse.astype(np.float64), 4, axis=-1), dtype)


def _brute_down(x, ids, mode):
    parents = np.unique(ids // 4)
    out = np.empty(x.shape[:-1] + (parents.size,))
    for k, par in enumerate(parents):
        vals = x[..., ids // 4 == par]
        out[..., k] = vals.max(-1) if mode == "max" else vals.mean(-1)
    return out, parents


@pytest.mark.parametrize("ids_kind", ["disc", "full_shuffled", "scattered"])
def test_down_up_regional_brute_force(backend_name, dtype, ids_kind):
    nside = 16
    npix = 12 * nside * nside
    rng = np.random.default_rng(4)
    if ids_kind == "disc":
        ids = _disc_ids(nside)
    elif ids_kind == "full_shuffled":
        ids = rng.permutation(npix).astype(np.int64)
    else:
        ids = rng.choice(npix, size=300, replace=False).astype(np.int64)
    bk = fc.get_backend(backend_name)
    x = rng.normal(size=(2, ids.size)).astype(dtype)
    for mode in ("max", "mean"):
        ref, parents = _brute_down(x.astype(np.float64), ids, mode)
        y, parent_ids = fc.down(bk.asarray(x), nside, cell_ids=ids, mode=mode, backend=backend_name)
        np.testing.assert_array_equal(parent_ids, parents)
        assert_close(y, ref, dtype)
    # A map constant on each parent comes back from down(mean) then up(target_ids=ids).
    per_parent = rng.normal(size=npix // 4)
    const = np.stack([per_parent[ids // 4], -per_parent[ids // 4]]).astype(dtype)
    y, parent_ids = fc.down(bk.asarray(const), nside, cell_ids=ids, mode="mean", backend=backend_name)
    back = fc.up(y, nside // 2, cell_ids=parent_ids, target_ids=ids, backend=backend_name)
    assert_close(back, const.astype(np.float64), dtype)
