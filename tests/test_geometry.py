"""Geometry of the oriented stencils, checked against healpy and analytic facts.

Nothing here compares the library with itself: tap positions are rebuilt from the documented
definitions (tangent-plane offsets along the analytic east/north vectors, gauge rotations) and
interpolated with healpy; derivative kernels are compared with analytic gradients of a smooth
field; symmetries (quarter-turn gauges, 90-degree longitude rotation) are exact facts of the
HEALPix grid and of the frame definitions.
"""

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from conftest import assert_close


# --------------------------------------------------------------------------------------------
# helpers (independent of the library)
# --------------------------------------------------------------------------------------------

def _disc_ids(nside, theta_deg=60.0, phi_deg=30.0, radius_deg=25.0, seed=7):
    """NESTED ids of a disc from healpy, shuffled (the library must keep any order)."""
    vec = hp.ang2vec(np.radians(theta_deg), np.radians(phi_deg))
    ids = hp.query_disc(nside, vec, np.radians(radius_deg), nest=True).astype(np.int64)
    return np.random.default_rng(seed).permutation(ids)


def _cell_ids(nside, ids):
    return np.arange(12 * nside * nside, dtype=np.int64) if ids is None else ids


def _pixel_size(nside):
    return np.sqrt(4.0 * np.pi / hp.nside2npix(nside))


def _offsets(kernel_sz):
    """(u, v) of tap p = i*K + j: u = j - K//2 (east), v = K//2 - i (north)."""
    h = kernel_sz // 2
    p = np.arange(kernel_sz * kernel_sz)
    i, j = p // kernel_sz, p % kernel_sz
    return (j - h).astype(np.float64), (h - i).astype(np.float64)


def _local_frame(nside, ids):
    """theta, phi, unit normal, east (increasing phi) and north (decreasing theta) of each cell."""
    theta, phi = hp.pix2ang(nside, ids, nest=True)
    normal = np.stack(hp.pix2vec(nside, ids, nest=True), axis=-1)
    east = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], axis=-1)
    north = np.stack([-np.cos(theta) * np.cos(phi), -np.cos(theta) * np.sin(phi), np.sin(theta)], axis=-1)
    return theta, phi, normal, east, north


def _frame_angle(theta, phi, gauge_type, g, n_gauges):
    """Counter-clockwise angle (seen from outside) of gauge g's first axis from east."""
    alpha = g * np.pi / n_gauges
    if gauge_type == "phi":
        return np.full(theta.shape, alpha)
    s = np.where(np.cos(theta) >= 0.0, 1.0, -1.0)
    return alpha - s * phi


def _tap_points(nside, ids, kernel_sz, gauge_type, n_gauges):
    """Unit vectors of every tap, shape (G, N, P, 3), from the documented definition."""
    theta, phi, normal, east, north = _local_frame(nside, ids)
    u, v = _offsets(kernel_sz)
    step = _pixel_size(nside)
    out = []
    for g in range(n_gauges):
        a = _frame_angle(theta, phi, gauge_type, g, n_gauges)[:, None, None]
        axis1 = np.cos(a) * east[:, None, :] + np.sin(a) * north[:, None, :]
        axis2 = -np.sin(a) * east[:, None, :] + np.cos(a) * north[:, None, :]
        pts = normal[:, None, :] + step * (u[None, :, None] * axis1 + v[None, :, None] * axis2)
        out.append(pts / np.linalg.norm(pts, axis=-1, keepdims=True))
    return np.stack(out)


def _healpy_interp(nside, vecs):
    """healpy's NESTED bilinear interpolation of unit vectors (..., 3): ids and weights (..., 4)."""
    shape = vecs.shape[:-1]
    theta, phi = hp.vec2ang(vecs.reshape(-1, 3))
    ids, w = hp.get_interp_weights(nside, theta, phi, nest=True)
    return ids.T.reshape(shape + (4,)).astype(np.int64), w.T.reshape(shape + (4,))


def _weight_per_id(ids, weights, query):
    """Total weight of ``ids`` equal to each entry of ``query`` (same leading shape, 4 slots)."""
    same = ids[..., None, :] == query[..., :, None]  # (..., 4 query, 4 ids)
    return np.sum(np.where(same, weights[..., None, :], 0.0), axis=-1)


def _centre(kernel_sz):
    return (kernel_sz * kernel_sz) // 2


def _tap(kernel_sz, u, v):
    """Tap index of the offset (u, v)."""
    h = kernel_sz // 2
    return (h - v) * kernel_sz + (u + h)


DOMAINS = ["full", "disc", "polar_disc"]


def _domain(kind, nside):
    """(nside, cell_ids): full sky, a mid-latitude disc, or a disc over the north pole (shuffled)."""
    if kind == "full":
        return nside, None
    if kind == "disc":
        return nside, _disc_ids(nside)
    return nside, _disc_ids(nside, theta_deg=5.0, phi_deg=0.0, radius_deg=20.0, seed=8)


# --------------------------------------------------------------------------------------------
# 1. the centre tap is the cell itself
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DOMAINS)
@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("n_gauges", [1, 2])
@pytest.mark.parametrize("kernel_sz", [3, 5])
def test_centre_tap_is_the_cell(kind, gauge_type, n_gauges, kernel_sz):
    nside, ids = _domain(kind, 16)
    st = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=n_gauges,
                             backend="numpy", dtype="float64")
    cells = _cell_ids(nside, ids)
    n = cells.size
    c = _centre(kernel_sz)
    assert st.index.shape == (n_gauges, n, kernel_sz**2, 4)
    assert st.weight.shape == st.index.shape
    np.testing.assert_array_equal(st.cell_ids, cells)
    idx, w = st.index[:, :, c, :], st.weight[:, :, c, :]  # (G, N, 4)
    # All weight on the cell itself: total weight on the cell's own id is 1, elsewhere 0.
    own = cells[idx] == cells[None, :, None]
    np.testing.assert_allclose(np.sum(np.where(own, w, 0.0), axis=-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.where(own, 0.0, w), 0.0, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# 2. every interpolation point: convex weights, healpy's 4 cells at the documented tap position
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DOMAINS)
@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("n_gauges", [1, 2])
@pytest.mark.parametrize("kernel_sz", [3, 5])
def test_weights_are_convex_and_in_range(kind, gauge_type, n_gauges, kernel_sz):
    nside, ids = _domain(kind, 16)
    st = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=n_gauges,
                             backend="numpy", dtype="float64")
    n = _cell_ids(nside, ids).size
    assert st.index.dtype == np.int64
    assert np.all(st.index >= 0) and np.all(st.index < n)
    assert np.all(st.weight >= 0.0)
    np.testing.assert_allclose(st.weight.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("n_gauges", [1, 2])
@pytest.mark.parametrize("kernel_sz", [3, 5])
def test_taps_match_healpy_interpolation_full_sky(gauge_type, n_gauges, kernel_sz):
    nside = 16
    st = fc.SphericalStencil(nside, kernel_sz, gauge_type=gauge_type, n_gauges=n_gauges,
                             backend="numpy", dtype="float64")
    cells = _cell_ids(nside, None)
    off = np.arange(kernel_sz**2) != _centre(kernel_sz)

    # Every cell (the poles included): healpy's weights at the documented tap position.
    pts = _tap_points(nside, cells, kernel_sz, gauge_type, n_gauges)[:, :, off]  # (G, N, P', 3)
    hp_ids, hp_w = _healpy_interp(nside, pts)
    lib_ids = cells[st.index[:, :, off]]
    lib_w = st.weight[:, :, off]
    # Same weight on each of healpy's cells, and nothing on any other cell.
    np.testing.assert_allclose(_weight_per_id(lib_ids, lib_w, hp_ids), _weight_per_id(hp_ids, hp_w, hp_ids),
                               rtol=0, atol=1e-9)
    on_hp = np.any(lib_ids[..., :, None] == hp_ids[..., None, :], axis=-1)
    np.testing.assert_allclose(np.sum(np.where(on_hp, lib_w, 0.0), axis=-1), 1.0, rtol=0, atol=1e-9)

    # The interpolated position of a tap lies at ~ pixel size * |(u, v)| from the cell centre:
    # within 5% on a random sample away from the poles, within 20% everywhere.
    cell_vec = np.stack(hp.pix2vec(nside, lib_ids.reshape(-1), nest=True), axis=-1).reshape(lib_ids.shape + (3,))
    interp = np.sum(lib_w[..., None] * cell_vec, axis=-2)
    interp /= np.linalg.norm(interp, axis=-1, keepdims=True)
    centre = np.stack(hp.pix2vec(nside, cells, nest=True), axis=-1)
    dist = np.arccos(np.clip(np.sum(interp * centre[None, :, None, :], axis=-1), -1.0, 1.0))
    u, v = _offsets(kernel_sz)
    ratio = dist / (_pixel_size(nside) * np.hypot(u, v)[off])[None, None, :]
    theta, _ = hp.pix2ang(nside, cells, nest=True)
    rng = np.random.default_rng(kernel_sz + 10 * n_gauges)
    sample = rng.choice(np.flatnonzero(np.abs(np.cos(theta)) < 0.8), size=300, replace=False)
    r = ratio[:, sample]
    assert np.all(np.abs(r - 1.0) < 0.05), f"distance ratio range [{r.min():.3f}, {r.max():.3f}]"
    assert np.all(np.abs(ratio - 1.0) < 0.20), f"distance ratio range [{ratio.min():.3f}, {ratio.max():.3f}]"


@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("kernel_sz", [3, 5])
def test_regional_taps_are_healpy_restricted_and_renormalised(gauge_type, kernel_sz):
    """On a disc: healpy's weights on the in-domain cells, renormalised; none inside -> the centre."""
    nside = 16
    ids = _disc_ids(nside)
    st = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=2,
                             backend="numpy", dtype="float64")
    off = np.arange(kernel_sz**2) != _centre(kernel_sz)
    pts = _tap_points(nside, ids, kernel_sz, gauge_type, 2)[:, :, off]
    hp_ids, hp_w = _healpy_interp(nside, pts)
    inside = np.isin(hp_ids, ids)
    hp_w = np.where(inside, hp_w, 0.0)
    total = hp_w.sum(axis=-1, keepdims=True)
    assert np.any(~inside), "the disc should have border taps falling outside it"
    lib_ids = ids[st.index[:, :, off]]
    lib_w = st.weight[:, :, off]
    own_w = np.sum(np.where(lib_ids == ids[None, :, None, None], lib_w, 0.0), axis=-1)
    # Clear cases: enough in-domain weight -> healpy's weights renormalised over the domain.
    ok = total[..., 0] > 1e-9
    exp_w = np.divide(hp_w, total, out=np.zeros_like(hp_w), where=ok[..., None])
    np.testing.assert_allclose(_weight_per_id(lib_ids, lib_w, hp_ids)[ok], _weight_per_id(hp_ids, exp_w, hp_ids)[ok],
                               rtol=0, atol=1e-9)
    # No interpolation cell inside -> the centre cell with weight 1.
    orphan = ~np.any(inside, axis=-1)
    assert np.any(orphan), "a 5x5 stencil on a disc border should have points with no cell inside"
    np.testing.assert_allclose(own_w[orphan], 1.0, rtol=0, atol=1e-12)
    # In-domain cells carrying only round-off weight (the point sits on a grid line): either reading
    # (fallback to the centre, or all weight on those in-domain cells) is a convex, in-domain choice.
    tiny = ~ok & ~orphan
    inside_ids = np.where(inside, hp_ids, -1)
    on_inside = np.sum(np.where(np.any(lib_ids[..., :, None] == inside_ids[..., None, :], axis=-1), lib_w, 0.0),
                       axis=-1)
    assert np.all((np.abs(own_w[tiny] - 1.0) < 1e-12) | (np.abs(on_inside[tiny] - 1.0) < 1e-12))
    # In-domain weight at round-off level (<= 1e-12) counts as no neighbour: the centre cell.
    roundoff = (total[..., 0] <= 1e-12) & ~orphan
    np.testing.assert_allclose(own_w[roundoff], 1.0, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# 3. / 4. constant maps and the identity kernel, every backend and dtype
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DOMAINS)
@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
def test_constant_map_with_normalised_kernel_is_constant(backend_name, dtype, kind, gauge_type):
    nside, ids = _domain(kind, 8 if kind == "full" else 16)
    n = _cell_ids(nside, ids).size
    rng = np.random.default_rng(3)
    c_in, c_out, k = 2, 3, 3
    w = rng.uniform(0.1, 1.0, size=(c_in, c_out, k * k))
    w /= w.sum(axis=(0, 2), keepdims=True)  # each output sums to 1 over (input channel, tap)
    value = 2.5
    x = np.full((2, c_in, n), value)
    st = fc.SphericalStencil(nside, k, cell_ids=ids, gauge_type=gauge_type, n_gauges=2,
                             backend=backend_name, dtype=dtype)
    bk = fc.get_backend(backend_name)
    y = st.conv(bk.asarray(x.astype(dtype)), bk.asarray(w.astype(dtype)))
    assert tuple(y.shape) == (2, 2 * c_out, n)
    assert_close(y, np.full((2, 2 * c_out, n), value), dtype)


@pytest.mark.parametrize("kind", DOMAINS)
@pytest.mark.parametrize("kernel_sz", [3, 5])
def test_centre_only_kernel_is_identity(backend_name, dtype, kind, kernel_sz):
    nside, ids = _domain(kind, 8 if kind == "full" else 16)
    n = _cell_ids(nside, ids).size
    c = 3
    x = np.random.default_rng(5).normal(size=(2, c, n)).astype(dtype)
    w = np.zeros((c, c, kernel_sz**2))
    w[np.arange(c), np.arange(c), _centre(kernel_sz)] = 1.0
    st = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type="cosmo", n_gauges=2,
                             backend=backend_name, dtype=dtype)
    bk = fc.get_backend(backend_name)
    y = st.conv(bk.asarray(x), bk.asarray(w.astype(dtype)))
    assert_close(y, np.concatenate([x, x], axis=1).astype(np.float64), dtype)


# --------------------------------------------------------------------------------------------
# 5. derivative kernels against analytic gradients
# --------------------------------------------------------------------------------------------

def _smooth_field(nside):
    """f = x*y + 0.5*y*z + 0.3*z + x (l <= 2) at the cell centres, and its east/north derivatives.

    D_east = (1/sin theta) df/dphi = grad f . e_east and D_north = -df/dtheta = grad f . e_north
    (the tangential gradient of the 3-D polynomial; the radial part does not enter).
    """
    ids = np.arange(hp.nside2npix(nside))
    theta, phi, normal, east, north = _local_frame(nside, ids)
    x, y, z = normal.T
    f = x * y + 0.5 * y * z + 0.3 * z + x
    grad = np.stack([y + 1.0, x + 0.5 * z, 0.5 * y + 0.3], axis=-1)
    return theta, phi, f, np.sum(grad * east, axis=-1), np.sum(grad * north, axis=-1)


def _difference_kernels(kernel_sz=3):
    """Kernels (1, 2, P): east minus west, north minus south (one pixel each way)."""
    w = np.zeros((1, 2, kernel_sz**2))
    w[0, 0, _tap(kernel_sz, 1, 0)], w[0, 0, _tap(kernel_sz, -1, 0)] = 1.0, -1.0
    w[0, 1, _tap(kernel_sz, 0, 1)], w[0, 1, _tap(kernel_sz, 0, -1)] = 1.0, -1.0
    return w


def _check_response(response, expected, what):
    corr = np.corrcoef(response, expected)[0, 1]
    assert corr > 0.99, f"{what}: correlation {corr:.4f}"
    slope = np.dot(response, expected) / np.dot(expected, expected)
    assert abs(slope - 1.0) < 0.05, f"{what}: amplitude ratio {slope:.3f}"


def test_difference_kernels_are_derivatives_phi_gauge():
    nside = 32
    theta, _, f, d_east, d_north = _smooth_field(nside)
    st = fc.SphericalStencil(nside, 3, gauge_type="phi", backend="numpy", dtype="float64")
    y = st.conv(f[None, None, :], _difference_kernels())[0]
    keep = np.abs(np.cos(theta)) < 0.8
    step = _pixel_size(nside)
    _check_response(y[0, keep], 2 * step * d_east[keep], "east - west")
    _check_response(y[1, keep], 2 * step * d_north[keep], "north - south")


def test_difference_kernels_follow_cosmo_frame():
    nside = 32
    theta, phi, f, d_east, d_north = _smooth_field(nside)
    kernels = _difference_kernels()
    cosmo = fc.SphericalStencil(nside, 3, gauge_type="cosmo", backend="numpy", dtype="float64")
    phi_st = fc.SphericalStencil(nside, 3, gauge_type="phi", backend="numpy", dtype="float64")
    y = cosmo.conv(f[None, None, :], kernels)[0]
    y_phi = phi_st.conv(f[None, None, :], kernels)[0]
    keep = np.abs(np.cos(theta)) < 0.8
    step = _pixel_size(nside)
    a = -np.where(np.cos(theta) >= 0.0, 1.0, -1.0) * phi  # first axis = cos(a) east + sin(a) north
    first = np.cos(a) * d_east + np.sin(a) * d_north
    second = -np.sin(a) * d_east + np.cos(a) * d_north
    _check_response(y[0, keep], 2 * step * first[keep], "cosmo first axis")
    _check_response(y[1, keep], 2 * step * second[keep], "cosmo second axis")
    # ... and it is not the phi gauge away from phi = 0.
    away = keep & (np.abs(np.sin(phi)) > 0.5)
    assert np.corrcoef(y[0, away], y_phi[0, away])[0, 1] < 0.9


# --------------------------------------------------------------------------------------------
# 6. the second of two gauges is the first with the kernel turned a quarter turn
# --------------------------------------------------------------------------------------------

def _quarter_turn(w, kernel_sz):
    """Kernel w' such that w' in gauge 0 == w in a frame rotated +90 degrees.

    Gauge 1's axes are (north, -east), so its tap (u, v) sits at u*north - v*east, which is gauge
    0's tap (-v, u): w'[tap(-v, u)] = w[tap(u, v)].
    """
    u, v = _offsets(kernel_sz)
    u, v = u.astype(int), v.astype(int)
    out = np.empty_like(w)
    out[..., _tap(kernel_sz, -v, u)] = w[..., np.arange(kernel_sz**2)]
    return out


@pytest.mark.parametrize("kind", DOMAINS)
@pytest.mark.parametrize("gauge_type", ["phi", "cosmo"])
@pytest.mark.parametrize("kernel_sz", [3, 5])
def test_second_gauge_is_quarter_turn(kind, gauge_type, kernel_sz):
    nside, ids = _domain(kind, 16)
    n = _cell_ids(nside, ids).size
    rng = np.random.default_rng(11)
    c_in, c_out = 2, 2
    w = rng.normal(size=(c_in, c_out, kernel_sz**2))
    x = rng.normal(size=(2, c_in, n))
    w_rot = _quarter_turn(w, kernel_sz)
    # The explicit tap map is numpy's counter-clockwise rot90 of the (north-up) kernel image.
    img = w.reshape(c_in, c_out, kernel_sz, kernel_sz)
    np.testing.assert_array_equal(w_rot, np.rot90(img, 1, axes=(2, 3)).reshape(w.shape))
    assert not np.allclose(w_rot, w)

    two = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=2,
                              backend="numpy", dtype="float64")
    one = fc.SphericalStencil(nside, kernel_sz, cell_ids=ids, gauge_type=gauge_type, n_gauges=1,
                              backend="numpy", dtype="float64")
    y2 = two.conv(x, w)
    np.testing.assert_allclose(y2[:, :c_out], one.conv(x, w), rtol=0, atol=1e-10)
    np.testing.assert_allclose(y2[:, c_out:], one.conv(x, w_rot), rtol=0, atol=1e-10)
    # Per-gauge kernels: gauge 1 given the inverse turn reproduces gauge 0 with w.
    w_back = _quarter_turn(_quarter_turn(_quarter_turn(w, kernel_sz), kernel_sz), kernel_sz)
    y_pg = two.conv(x, np.stack([w, w_back]))
    np.testing.assert_allclose(y_pg[:, c_out:], y_pg[:, :c_out], rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------
# 7. a 90-degree rotation in longitude commutes with the phi-gauge conv
# --------------------------------------------------------------------------------------------

def _quarter_rotation(nside):
    """perm[c] = NESTED id of cell c rotated by +90 degrees in longitude."""
    ids = np.arange(hp.nside2npix(nside))
    theta, phi = hp.pix2ang(nside, ids, nest=True)
    perm = hp.ang2pix(nside, theta, phi + np.pi / 2, nest=True).astype(np.int64)
    return perm


@pytest.mark.parametrize("nside", [8, 16])
def test_quarter_rotation_is_a_permutation(nside):
    perm = _quarter_rotation(nside)
    npix = hp.nside2npix(nside)
    np.testing.assert_array_equal(np.sort(perm), np.arange(npix))
    vec = np.stack(hp.pix2vec(nside, np.arange(npix), nest=True), axis=-1)
    rot = np.stack(hp.pix2vec(nside, perm, nest=True), axis=-1)
    np.testing.assert_allclose(rot, np.stack([-vec[:, 1], vec[:, 0], vec[:, 2]], axis=-1), atol=1e-12)
    # Four quarter turns are the identity.
    np.testing.assert_array_equal(perm[perm[perm[perm]]], np.arange(npix))


@pytest.mark.parametrize("nside", [8, 16])
@pytest.mark.parametrize("kernel_sz", [3, 5])
@pytest.mark.parametrize("n_gauges", [1, 2])
def test_phi_gauge_conv_commutes_with_quarter_rotation(nside, kernel_sz, n_gauges):
    perm = _quarter_rotation(nside)
    rng = np.random.default_rng(nside + kernel_sz)
    npix = hp.nside2npix(nside)
    x = rng.normal(size=(2, 2, npix))
    w = rng.normal(size=(2, 3, kernel_sz**2))
    x_rot = np.empty_like(x)
    x_rot[..., perm] = x  # the map carried along by the rotation
    st = fc.SphericalStencil(nside, kernel_sz, gauge_type="phi", n_gauges=n_gauges, backend="numpy",
                             dtype="float64")
    y = st.conv(x, w)
    y_rot = st.conv(x_rot, w)
    np.testing.assert_allclose(y_rot[..., perm], y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("nside", [8, 16])
def test_cosmo_gauge_under_quarter_rotation(nside):
    """The cosmo frame turns by -s*90 degrees when carried by a +90-degree longitude rotation.

    North (s=+1): the rotated cell's frame is the carried frame turned clockwise, so conv of the
    rotated map there equals conv of the map with the kernel turned a quarter turn clockwise (the
    inverse of gauge 1's turn); south: counter-clockwise.
    """
    kernel_sz = 3
    perm = _quarter_rotation(nside)
    rng = np.random.default_rng(21)
    npix = hp.nside2npix(nside)
    x = rng.normal(size=(1, 2, npix))
    w = rng.normal(size=(2, 2, kernel_sz**2))
    x_rot = np.empty_like(x)
    x_rot[..., perm] = x
    st = fc.SphericalStencil(nside, kernel_sz, gauge_type="cosmo", backend="numpy", dtype="float64")
    y_rot = st.conv(x_rot, w)[..., perm]
    ccw = _quarter_turn(w, kernel_sz)
    cw = _quarter_turn(_quarter_turn(ccw, kernel_sz), kernel_sz)
    z = np.cos(hp.pix2ang(nside, np.arange(npix), nest=True)[0])
    north, south = z > 1e-9, z < -1e-9
    np.testing.assert_allclose(y_rot[..., north], st.conv(x, cw)[..., north], rtol=0, atol=1e-10)
    np.testing.assert_allclose(y_rot[..., south], st.conv(x, ccw)[..., south], rtol=0, atol=1e-10)

