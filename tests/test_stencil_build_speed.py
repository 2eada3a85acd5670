"""The vectorised stencil build gives the tables of the healpy-based build it replaced.

``_reference_stencil`` is that build (foscat_core at d7290f6: healpy ``get_interp_weights``,
``ring2nest`` and ``Domain.locate`` per point), kept here to pin the tables: on regional domains
ids must be equal and weights within 1e-12. The full sky is computed on faces 0, 4 and 8 and
rotated onto the others, which may list a point's 4 cells in another order: there each point's
weight per cell must agree within 1e-12. Speed is measured in benchmarks/, not asserted here.
"""

import healpy as hp
import numpy as np
import pytest

from foscat_core import Domain
from foscat_core.ordering import as_domain
from foscat_core.stencils.geometry import _RingPositions, compute_stencil, gauge_angles, tap_offsets
from foscat_core.stencils.ring_interp import RingGeometry, nest2ring


def _reference_stencil(domain, kernel_sz, gauge_type, n_gauges):
    nside, ids, p = domain.nside, domain.cell_ids, kernel_sz * kernel_sz
    centre = p // 2
    theta, phi = hp.pix2ang(nside, ids, nest=True)
    ct, st, cp, sp = np.cos(theta), np.sin(theta), np.cos(phi), np.sin(phi)
    normal = np.stack([st * cp, st * sp, ct], -1)
    east = np.stack([-sp, cp, np.zeros_like(phi)], -1)
    north = np.stack([-ct * cp, -ct * sp, st], -1)
    u, v = tap_offsets(kernel_sz)
    off = np.arange(p) != centre
    u, v = u[off], v[off]
    step = np.sqrt(np.pi / 3.0) / nside
    index = np.empty((n_gauges, ids.size, p, 4), dtype=np.int64)
    weight = np.zeros((n_gauges, ids.size, p, 4))
    index[:, :, centre, :] = np.arange(ids.size)[None, :, None]
    weight[:, :, centre, 0] = 1.0
    for g, angle in enumerate(gauge_angles(theta, phi, ct, gauge_type, n_gauges)):
        ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
        ce, cn = step * (u * ca - v * sa), step * (u * sa + v * ca)
        x, y, z = (normal[:, k:k + 1] + ce * east[:, k:k + 1] + cn * north[:, k:k + 1] for k in range(3))
        pt = np.arccos(np.clip(z / np.sqrt(x * x + y * y + z * z), -1.0, 1.0)).reshape(-1)
        pp = np.arctan2(y, x).reshape(-1)
        pp[pp < 0] += 2 * np.pi
        ring, w = hp.get_interp_weights(nside, pt, pp, nest=False)
        pos, present = domain.locate(hp.ring2nest(nside, ring).T)
        w = np.maximum(w.T, 0.0) * present
        total = w.sum(axis=1, keepdims=True)
        inside = total[:, 0] > 1e-12
        w = np.divide(w, total, out=np.zeros_like(w), where=total > 1e-12)
        centre_pos = np.repeat(np.arange(ids.size), u.size)
        pos[~inside], w[~inside] = centre_pos[~inside, None], (1.0, 0.0, 0.0, 0.0)
        index[g][:, off], weight[g][:, off] = pos.reshape(ids.size, -1, 4), w.reshape(ids.size, -1, 4)
    return index, weight


def _shuffled_disc(nside, lon, lat, radius_deg, seed):
    ids = hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(radius_deg), nest=True)
    return np.random.default_rng(seed).permutation(ids)


def _point_cell_weights(index, weight, n_cells):
    """The table as an operator: sorted (point * n_cells + cell) keys with weight over 1e-12, and
    each key's total weight (a cell may be listed twice, a zero weight names any cell)."""
    points = np.repeat(np.arange(index[..., 0].size), 4)
    keep = weight.reshape(-1) > 1e-12
    keys, where = np.unique(points[keep] * n_cells + index.reshape(-1)[keep], return_inverse=True)
    return keys, np.bincount(where, weights=weight.reshape(-1)[keep])


def _assert_same_tables(domain, kernel_sz, gauge_type, n_gauges):
    index, weight = compute_stencil(domain, kernel_sz, gauge_type, n_gauges)
    ref_index, ref_weight = _reference_stencil(domain, kernel_sz, gauge_type, n_gauges)
    if domain.is_full_sky:  # the same operator: each point's cells and their weights
        keys, sums = _point_cell_weights(index, weight, domain.n_cells)
        ref_keys, ref_sums = _point_cell_weights(ref_index, ref_weight, domain.n_cells)
        np.testing.assert_array_equal(keys, ref_keys)
        np.testing.assert_allclose(sums, ref_sums, rtol=0.0, atol=1e-12)
    else:
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_allclose(weight, ref_weight, rtol=0.0, atol=1e-12)
    np.testing.assert_allclose(weight.sum(axis=-1), 1.0, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("nside", [1, 2, 4, 16])
def test_nest2ring_matches_healpy(nside):
    ids = np.arange(12 * nside * nside)
    np.testing.assert_array_equal(nest2ring(nside, ids), hp.nest2ring(nside, ids))


def test_nest2ring_matches_healpy_at_high_nside():
    nside = 2**13
    ids = np.random.default_rng(0).integers(0, 12 * nside * nside, 20000)
    np.testing.assert_array_equal(nest2ring(nside, ids), hp.nest2ring(nside, ids))


@pytest.mark.parametrize("nside", [1, 4, 32, 2048])
def test_ring_interpolation_matches_healpy(nside):
    rng = np.random.default_rng(nside)
    theta = np.concatenate([np.arccos(rng.uniform(-1.0, 1.0, 20000)), [0.0, np.pi, 1e-9, np.pi - 1e-9, 1.2]])
    phi = np.concatenate([rng.uniform(0.0, 2 * np.pi, 20000), [0.0, 1.0, 2 * np.pi, 3.0, 2 * np.pi]])
    centres = hp.pix2ang(nside, np.arange(min(12 * nside * nside, 5000)))  # points on ring centres
    theta, phi = np.concatenate([theta, centres[0]]), np.concatenate([phi, centres[1]])
    pix, w = RingGeometry(nside).interpolate(theta, phi)
    ref_pix, ref_w = hp.get_interp_weights(nside, theta, phi, nest=False)
    np.testing.assert_array_equal(pix, ref_pix)
    np.testing.assert_allclose(w, ref_w, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("n_gauges,kernel_sz", [(1, 3), (3, 3), (2, 5)])
@pytest.mark.parametrize("nside", [1, 2, 4, 8])
def test_full_sky_tables_unchanged(nside, kernel_sz, gauge_type, n_gauges):
    _assert_same_tables(Domain(nside), kernel_sz, gauge_type, n_gauges)


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
def test_full_sky_nside16_k5_unchanged(gauge_type):
    _assert_same_tables(Domain(16), 5, gauge_type, 1)


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("n_gauges,kernel_sz", [(1, 3), (2, 5)])
def test_regional_shuffled_tables_unchanged(kernel_sz, gauge_type, n_gauges):
    _assert_same_tables(Domain(16, _shuffled_disc(16, 40.0, 20.0, 30.0, 1)), kernel_sz, gauge_type, n_gauges)


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
def test_regional_nside32_polar_cap_unchanged(gauge_type):
    # Around the north pole: the polar branch of the interpolation and orphan points at the edge.
    _assert_same_tables(Domain(32, _shuffled_disc(32, 10.0, 75.0, 20.0, 2)), 3, gauge_type, 2)


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
def test_ring_ordering_tables_unchanged(gauge_type):
    _assert_same_tables(as_domain(8, np.arange(768), nest=False), 3, gauge_type, 2)
    ring_ids = hp.query_disc(8, hp.ang2vec(2.0, 4.0), np.radians(40.0), nest=False)[::-1]
    _assert_same_tables(as_domain(8, ring_ids, nest=False), 5, gauge_type, 1)


def test_sparse_domain_uses_sorted_search_and_unchanged():
    # Cells near both poles: the RING-id span is most of the sphere, far over 64 times the domain,
    # so positions come from the sorted search instead of the dense table.
    nside = 16
    ids = np.concatenate([_shuffled_disc(nside, 0.0, 85.0, 8.0, 3), _shuffled_disc(nside, 0.0, -85.0, 8.0, 4)])
    domain = Domain(nside, ids)
    lookup = _RingPositions(domain)
    assert lookup.table is None
    _assert_same_tables(domain, 3, "cosmo", 1)
