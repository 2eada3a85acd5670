"""foscat_core.diagnostics: band powers, moments and Minkowski functionals (validated against
hand counts and the analytic expectations of a Gaussian random field)."""

import healpy as hp
import numpy as np
import pytest
from scipy import stats
from scipy.special import erfc

from foscat_core.diagnostics import band_power_ratios, band_powers, minkowski_functionals, moments


def gaussian_map(nside, seed, fwhm_pixels=3.0, slope=1.0):
    """A standardised NESTED Gaussian field with C_l = l**-slope smoothed by a Gaussian beam, and
    the lambda = <|grad u|**2> / (2 var) of its spectrum (unit sphere)."""
    ell = np.arange(3 * nside)
    cl = np.zeros(3 * nside)
    cl[2:] = ell[2:] ** -slope
    fwhm = np.radians(fwhm_pixels * hp.nside2resol(nside, arcmin=True) / 60)
    np.random.seed(seed)
    m = hp.synfast(cl, nside, fwhm=fwhm)
    cls = cl * hp.gauss_beam(fwhm, lmax=3 * nside - 1) ** 2
    lam = np.sum((2 * ell + 1) * cls * ell * (ell + 1) / 2) / np.sum((2 * ell + 1) * cls)
    return hp.reorder((m - m.mean()) / m.std(), r2n=True), lam


def test_band_powers_of_a_known_spectrum():
    nside = 32
    cl = np.zeros(3 * nside)
    cl[8:16] = 1.0  # all the power in the band l = 8-16
    np.random.seed(3)
    m = hp.synfast(cl, nside)
    bands, p = band_powers(m, nest=False)
    assert bands.tolist() == [[4, 8], [8, 16], [16, 32], [32, 64]]
    want = np.sum((2 * np.arange(8, 16) + 1)) / (4 * np.pi)
    assert abs(p[0, 1] / want - 1) < 0.15  # cosmic variance of 192 modes
    assert np.all(p[0, [0, 2, 3]] < 1e-3 * p[0, 1])
    # the same sky in NESTED order gives the same powers, and a scaled map the square of the scale
    nested = hp.reorder(m, r2n=True)
    assert np.allclose(band_powers(nested)[1], p, rtol=1e-10)
    _, ratios = band_power_ratios(np.stack([nested, -2 * nested]), nested)
    assert np.allclose(ratios, [[1.0] * 4, [4.0] * 4], rtol=1e-10)
    # a batch of references: their mean power
    _, r2 = band_power_ratios(nested, np.stack([nested, 3 * nested]))
    assert np.allclose(r2, 0.2, rtol=1e-10)


def test_moments_match_scipy():
    x = np.random.default_rng(0).gamma(2.0, size=(3, 5000))
    m = moments(x)
    assert np.allclose(m["mean"], x.mean(1)) and np.allclose(m["std"], x.std(1))
    assert np.allclose(m["skewness"], stats.skew(x, axis=1), rtol=1e-12)
    assert np.allclose(m["kurtosis"], stats.kurtosis(x, axis=1), rtol=1e-12)
    assert abs(m["skewness"].mean() - np.sqrt(2)) < 0.2  # gamma(2): skewness sqrt(2), excess kurtosis 3
    assert moments(np.ones(4))["skewness"][0] == 0.0


def test_minkowski_functionals_by_hand():
    nside = 4
    npix = 12 * nside**2
    one = np.zeros(npix)
    one[5] = 1.0
    v0, v1, v2 = minkowski_functionals(one, [0.5, -0.5])
    corners = hp.boundaries(nside, 5, step=1, nest=True).T
    perimeter = sum(np.arccos(np.clip(corners[i] @ corners[(i + 1) % 4], -1, 1)) for i in range(4))
    assert np.allclose(v0, [1 / npix, 1.0])
    assert np.isclose(v1[0], perimeter / (16 * np.pi), rtol=1e-10) and v1[1] == 0
    assert np.allclose(v2 * 4 * np.pi, [1.0, 2.0])  # one disc; the whole sphere
    # the sphere minus one pixel is a disc (chi 1); two pixels touching at a corner are one set
    assert np.isclose(minkowski_functionals(-one, [-0.5])[2][0] * 4 * np.pi, 1.0)
    nbrs = hp.get_all_neighbours(nside, 5, nest=True)  # SW, W, NW, N, NE, E, SE, S
    diag = np.zeros(npix)
    diag[[5, nbrs[0]]] = 1.0
    apart = np.zeros(npix)
    apart[[5, (5 + npix // 2) % npix]] = 1.0
    assert np.isclose(minkowski_functionals(diag, [0.5])[2][0] * 4 * np.pi, 1.0)
    assert np.isclose(minkowski_functionals(apart, [0.5])[2][0] * 4 * np.pi, 2.0)
    # RING input gives the numbers of the same map in NESTED order
    ring = hp.reorder(diag, n2r=True)
    assert np.allclose(np.array(minkowski_functionals(ring, [0.5], nest=False)),
                       np.array(minkowski_functionals(diag, [0.5])), rtol=1e-12)


@pytest.mark.parametrize("seed", [1, 2])
def test_minkowski_functionals_of_a_gaussian_field(seed):
    m, lam = gaussian_map(32, seed)
    nu = np.linspace(-3, 3, 25)
    v0, v1, v2 = minkowski_functionals(m, nu)
    g = np.exp(-nu**2 / 2)
    assert np.max(np.abs(v0 - erfc(nu / np.sqrt(2)) / 2)) < 0.03
    assert np.corrcoef(v1, g)[0, 1] > 0.99
    assert np.corrcoef(v2, nu * g)[0, 1] > 0.97
    # amplitudes: v1 = sqrt(lam)/8 exp(-nu^2/2) for the smooth contour, times the staircase's 4/pi;
    # v2 = lam nu exp(-nu^2/2) / (2 pi)^(3/2) + erfc(nu/sqrt 2) / (4 pi) (Gaussian kinematic formula)
    v1_model = np.sqrt(lam) / 8 * g
    assert abs(np.sum(v1 * v1_model) / np.sum(v1_model**2) / (4 / np.pi) - 1) < 0.1
    v2_model = lam * nu * g / (2 * np.pi) ** 1.5 + erfc(nu / np.sqrt(2)) / (4 * np.pi)
    assert abs(np.sum(v2 * v2_model) / np.sum(v2_model**2) - 1) < 0.1


def test_bad_input():
    good = np.zeros(12 * 4**2)
    with pytest.raises(ValueError, match="full-sky"):
        band_powers(np.zeros(100))
    with pytest.raises(ValueError, match="nside >= 4"):
        band_powers(np.zeros(48))
    with pytest.raises(ValueError, match="reference must have the maps' nside 4"):
        band_power_ratios(good, np.zeros(12 * 8**2))
    with pytest.raises(TypeError, match="nest must be True"):
        band_powers(good, nest="yes")
    with pytest.raises(TypeError, match="maps must hold real numbers"):
        moments(good + 1j)
    with pytest.raises(ValueError, match="NaN"):
        minkowski_functionals(np.full(12 * 4**2, np.nan), [0.0])
    with pytest.raises(ValueError, match="m must be one map"):
        minkowski_functionals(np.zeros((2, 12 * 4**2)), [0.0])
    with pytest.raises(ValueError, match="thresholds"):
        minkowski_functionals(good, [])
