"""Scattering covariance: cross-backend agreement, symmetries, scaling laws, definitions."""

import healpy as hp
import numpy as np
import pytest

from conftest import cached_funct
from foscat_core import SphericalStencil, down
from foscat_core.scattering import ScatteringStatistics, funct
from foscat_core.scattering.wavelets import conv_kernel, morlet_bank

NSIDE = 8
NPIX = 12 * NSIDE**2
get_op = cached_funct


def disc_ids(nside=NSIDE, radius_deg=40.0):
    return hp.query_disc(nside, hp.ang2vec(np.pi / 3, 1.0), np.radians(radius_deg), nest=True)


def assert_stats_close(actual, reference, tol):
    a, r = actual.numpy(), reference.numpy()
    assert a.keys() == r.keys()
    for name in r:
        assert a[name].shape == r[name].shape, name
        scale = max(1e-300, float(np.max(np.abs(r[name]))))
        err = float(np.max(np.abs(a[name] - r[name]))) / scale
        assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.0e}"


CASES = {
    "full-auto": dict(),
    "full-auto-self": dict(norm="self"),
    "full-cross-mask": dict(y=True, mask=True),
    "disc-auto-mask-self": dict(region=True, mask=True, norm="self"),
    "disc-cross": dict(region=True, y=True),
}


def case_args(case, rng):
    spec = CASES[case]
    ids = disc_ids() if spec.get("region") else None
    n = NPIX if ids is None else ids.size
    kw = {"x": rng.normal(size=(2, n)) + 0.3}
    if spec.get("y"):
        kw["y"] = 0.5 * kw["x"] + rng.normal(size=(2, n))
    if spec.get("mask"):
        kw["mask"] = rng.uniform(size=(3, n))
    if ids is not None:
        kw.update(cell_ids=ids, nside=NSIDE)
    if "norm" in spec:
        kw["norm"] = spec["norm"]
    return kw


@pytest.mark.parametrize("case", sorted(CASES))
def test_cross_backend_float64(backend_name, case):
    kw = case_args(case, np.random.default_rng(7))
    ref = get_op("numpy").eval(**kw)
    got = get_op(backend_name).eval(**kw)
    assert got.backend.name == backend_name
    assert_stats_close(got, ref, 1e-8)


def test_shapes_and_scale_count():
    op = get_op("numpy")
    st = op.eval(np.random.default_rng(0).normal(size=NPIX))
    j, k = 4, 4  # nside 8 -> 8, 4, 2, 1
    assert st.S0.shape == (1, 1, 2)
    assert st.S1.shape == st.S2.shape == (1, 1, j, k)
    assert st.S3.shape == (1, 1, j * (j + 1) // 2, k, k, 2)
    assert st.S4.shape == (1, 1, j * (j + 1) * (j + 2) // 6, k, k, k, 2)
    assert st.S3P is None and not st.cross
    assert st.j2_j3.shape == (10, 2) and np.all(st.j2_j3[:, 0] <= st.j2_j3[:, 1])
    assert np.all(np.diff(st.j1_j2_j3, axis=1) >= 0)
    assert funct(nstep_max=2, backend="numpy").eval(np.zeros(NPIX) + 1.0).S1.shape[2] == 2
    assert funct(JmaxDelta=1, backend="numpy").eval(np.ones(NPIX)).S1.shape[2] == 3
    assert op.eval(np.ones(NPIX), Jmax=2).S1.shape[2] == 2
    with pytest.raises(ValueError, match="Jmax"):
        op.eval(np.ones(NPIX), Jmax=5)


def test_wavelets_zero_mean_equal_energy():
    psi, phi = morlet_bank(5, 4, 1.2)
    assert np.allclose(psi.sum(axis=1), 0, atol=1e-14)
    assert np.allclose((np.abs(psi) ** 2).sum(axis=1), 1.0)
    assert np.isclose(phi.sum(), 1.0) and np.all(phi > 0)
    # theta_0 = 0 oscillates along u (east): the real part is even, the imaginary part odd in u.
    k = conv_kernel(5, 4)[0]
    re0, im0 = k[0].reshape(5, 5), k[4].reshape(5, 5)
    assert np.allclose(re0, re0[:, ::-1]) and np.allclose(im0, -im0[:, ::-1])
    assert np.allclose(im0, im0[::-1, :])


@pytest.mark.parametrize("region", [False, True])
def test_depthwise_filter_equals_stencil_conv(region):
    ids = disc_ids() if region else None
    st = SphericalStencil(NSIDE, 5, cell_ids=ids, backend="numpy", dtype="float64")
    maps = np.random.default_rng(1).normal(size=(3, st.n_cells))
    bank = conv_kernel(5, 4)  # (1, C, P)
    expected = st.conv(maps[:, None, :], bank)
    got = st.filter(maps, bank[0])
    assert np.allclose(got, expected, rtol=0, atol=1e-13)


def rotate90(x, nside):
    theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True)
    target = hp.ang2pix(nside, theta, phi + np.pi / 2, nest=True)
    out = np.empty_like(x)
    out[..., target] = x
    return out


def test_rotation_invariance_full_sky():
    op = get_op("numpy")
    x = np.random.default_rng(3).normal(size=(2, NPIX))
    a, b = op.eval(x).numpy(), op.eval(rotate90(x, NSIDE)).numpy()
    for name in ("S0", "S1", "S2", "S3", "S4"):
        assert np.allclose(a[name], b[name], rtol=1e-10, atol=1e-14 * np.abs(a[name]).max()), name


def test_scaling_laws(backend_name):
    op = get_op(backend_name)
    x = np.random.default_rng(4).normal(size=(2, NPIX))
    a = -2.5
    s, t = op.eval(x).numpy(), op.eval(a * x).numpy()
    assert np.allclose(t["S1"], abs(a) * s["S1"], rtol=1e-12)
    assert np.allclose(t["S2"], a**2 * s["S2"], rtol=1e-12)
    # normalised S4 is scale free
    sn, tn = op.eval(x, norm="self").numpy(), op.eval(a * x, norm="self").numpy()
    assert np.allclose(tn["S4"], sn["S4"], rtol=1e-9, atol=1e-14)


def test_white_noise_imaginary_parts_vanish():
    op = get_op("numpy")
    st = op.eval(np.random.default_rng(5).normal(size=(4, 12 * 16**2)), norm="self").mean_batch()
    m = st.numpy()
    fine3, fine4 = st.j2_j3[:, 1] <= 1, st.j1_j2_j3[:, 2] <= 1  # scales with many cells
    s3, s4 = m["S3"][:, :, fine3], m["S4"][:, :, fine4]
    rms = lambda a: float(np.sqrt(np.mean(a**2)))
    assert rms(s4.imag) < 0.1 * rms(s4.real)
    # S3 is odd in x: for a Gaussian field both its parts vanish in expectation.
    assert rms(s3.imag) < 0.3 * rms(s4.real)
    assert rms(s3.real) < 0.3 * rms(s4.real)


@pytest.mark.parametrize("norm", [None, "self"])
def test_cross_of_identical_maps_is_auto(norm):
    op = get_op("numpy")
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, NPIX)) + 1.0
    mask = rng.uniform(size=(2, NPIX))
    auto, cross = op.eval(x, mask=mask, norm=norm).numpy(), op.eval(x, x, mask=mask, norm=norm).numpy()
    for name in ("S0", "S1", "S2", "S3", "S4"):
        assert np.allclose(cross[name], auto[name], rtol=1e-12, atol=1e-15), name
    assert np.allclose(cross["S3P"], auto["S3"], rtol=1e-12, atol=1e-15)


def test_mask_of_ones_is_no_mask():
    op = get_op("numpy")
    x = np.random.default_rng(8).normal(size=(1, NPIX))
    a, b = op.eval(x).numpy(), op.eval(x, mask=np.full((1, NPIX), 3.0)).numpy()
    for name in a:
        assert np.allclose(a[name], b[name], rtol=1e-12, atol=1e-16)


def test_mask_rows_select_regions():
    """A 0/1 mask row gives the weighted means over its cells only: S0 equals the plain mean there."""
    op = get_op("numpy")
    x = np.random.default_rng(9).normal(size=(1, NPIX))
    mask = np.zeros((2, NPIX))
    mask[0, : NPIX // 2] = 1
    mask[1, NPIX // 2:] = 1
    s0 = op.eval(x, mask=mask).numpy()["S0"]
    assert np.allclose(s0[0, :, 0], [x[0, : NPIX // 2].mean(), x[0, NPIX // 2:].mean()])
    assert np.allclose(s0[0, :, 1], [x[0, : NPIX // 2].var(), x[0, NPIX // 2:].var()])


def brute_force(x, y, nside, ids, kernel_sz, n_orient, n_scales, xi):
    """S1..S4 by the definitions, one map and one orientation at a time, with stencil.conv and down."""
    bank = conv_kernel(kernel_sz, n_orient, 1.2, xi)[0]
    psi = bank[:n_orient] + 1j * bank[n_orient:2 * n_orient]
    phi = bank[2 * n_orient]

    def conv(st, m, kern):
        w = np.stack([kern.real, kern.imag])[None]  # (1, 2, P)
        out = st.conv(m[None, None, :], w)[0]
        return out[0] + 1j * out[1]

    levels, ns, cur = [], nside, ids
    for _ in range(n_scales):
        levels.append((ns, cur, SphericalStencil(ns, kernel_sz, cell_ids=cur, backend="numpy", dtype="float64")))
        cur = None if cur is None else np.unique(cur // 4)
        ns //= 2
    xs, ys, mx, my = x, y, {}, {}  # mx[(j2, j)] = list over k2 of |x * W_j2,k2| carried to scale j
    s3, s4 = {}, {}
    s1, s2 = np.zeros((n_scales, n_orient)), np.zeros((n_scales, n_orient), complex)
    for j, (ns, cur, st) in enumerate(levels):
        cx = [conv(st, xs, psi[k]) for k in range(n_orient)]
        cy = [conv(st, ys, psi[k]) for k in range(n_orient)]
        for k in range(n_orient):
            s1[j, k] = np.mean(np.sqrt(np.abs(cx[k]) * np.abs(cy[k])))
            s2[j, k] = np.mean(cx[k] * np.conj(cy[k]))
        mx[(j, j)], my[(j, j)] = [np.abs(c) for c in cx], [np.abs(c) for c in cy]
        for j2 in range(j + 1):
            for k2 in range(n_orient):
                for k3 in range(n_orient):
                    s3[(j2, j, k2, k3)] = np.mean(cx[k3] * np.conj(conv(st, my[(j2, j)][k2], psi[k3])))
        for j2 in range(j + 1):
            for j1 in range(j2 + 1):
                for k1 in range(n_orient):
                    for k2 in range(n_orient):
                        for k3 in range(n_orient):
                            a = conv(st, mx[(j1, j)][k1], psi[k3])
                            b = conv(st, my[(j2, j)][k2], psi[k3])
                            s4[(j1, j2, j, k1, k2, k3)] = np.mean(a * np.conj(b))
        if j + 1 < n_scales:
            smooth = lambda m: down(conv(st, m, phi + 0j).real, ns, cur, mode="mean", backend="numpy")[0]
            xs, ys = smooth(xs), smooth(ys)
            for j2 in range(j + 1):
                mx[(j2, j + 1)] = [smooth(m) for m in mx[(j2, j)]]
                my[(j2, j + 1)] = [smooth(m) for m in my[(j2, j)]]
    return s1, s2, s3, s4


@pytest.mark.parametrize("region", [False, True])
def test_matches_brute_force_definitions(region):
    nside, k, l = 4, 3, 2
    ids = disc_ids(nside, 70.0) if region else None
    n = 12 * nside**2 if ids is None else ids.size
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=n), rng.normal(size=n)
    op = funct(KERNELSZ=k, NORIENT=l, backend="numpy")
    n_scales = 2 if region else 3
    kw = dict(cell_ids=ids, nside=nside if region else None, Jmax=n_scales)
    st = op.eval(x, y, **kw).numpy()
    s1, s2, s3, s4 = brute_force(x, y, nside, ids, k, l, n_scales, op.XI)
    assert np.allclose(st["S1"][0, 0], s1)
    assert np.allclose(st["S2"][0, 0], s2)
    got = op.eval(x, y, **kw)
    for idx, (j2, j3) in enumerate(got.j2_j3):
        for k2 in range(l):
            for k3 in range(l):
                assert np.isclose(st["S3"][0, 0, idx, k2, k3], s3[(j2, j3, k2, k3)], rtol=1e-10, atol=1e-14)
    for idx, (j1, j2, j3) in enumerate(got.j1_j2_j3):
        for k1 in range(l):
            for k2 in range(l):
                for k3 in range(l):
                    assert np.isclose(st["S4"][0, 0, idx, k1, k2, k3], s4[(j1, j2, j3, k1, k2, k3)], rtol=1e-10,
                                      atol=1e-14)
    # S3P swaps the maps' roles
    swapped = op.eval(y, x, **kw).numpy()
    assert np.allclose(st["S3P"], swapped["S3"])


def test_statistics_type_and_alias():
    assert isinstance(get_op("numpy").eval(np.ones(NPIX)), ScatteringStatistics)


def test_regional_cell_order_does_not_matter():
    ids = disc_ids()
    rng = np.random.default_rng(15)
    x, y = rng.normal(size=(2, ids.size)), rng.normal(size=(2, ids.size))
    perm = rng.permutation(ids.size)
    op = get_op("numpy")
    a = op.eval(x, y, cell_ids=ids, nside=NSIDE, norm="self").numpy()
    b = op.eval(x[:, perm], y[:, perm], cell_ids=ids[perm], nside=NSIDE, norm="self").numpy()
    for name in a:
        assert np.allclose(a[name], b[name], rtol=1e-10, atol=1e-14), name


def test_float32_close_to_float64(backend_name):
    x = np.random.default_rng(16).normal(size=(1, NPIX))
    ref = get_op("numpy").eval(x, norm="self")
    got = get_op(backend_name, all_type="float32").eval(x, norm="self")
    assert got.backend.dtype_name(got.S4) == "float32"
    assert_stats_close(got, ref, 1e-4)
