"""Issue 11 items 1, 6 and 7: complex data refused, empty dimensions, filter input checks.

Each test runs on every backend and failed before the fix (complex data only warned and lost its
imaginary part; TF conv of an empty batch raised from deep inside TensorFlow; C_out=0, (0, N)
statistics and empty id lists gave reshape or dtype errors; filter had no checks at all).
"""

import warnings

import numpy as np
import pytest

import foscat_core as fc
from conftest import BACKENDS, to_numpy
from foscat_core.nn import HealpixUNet
from foscat_core.scattering import funct

NSIDE, NPIX = 2, 48


def _tensor(backend, array):
    """``array`` as a native tensor of ``backend`` (kept as NumPy for numpy)."""
    return fc.get_backend(backend).asarray(array)


@pytest.fixture
def stencil(backend_name):
    return fc.SphericalStencil(NSIDE, 3, backend=backend_name)


def _raises_without_warning(err, match, fn):
    """``fn()`` raises ``err`` matching ``match`` and warns nothing first (a warning was the old answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(err, match=match):
            fn()


# ---- 1. complex input ------------------------------------------------------------------------

@pytest.mark.parametrize("native", [False, True], ids=["host", "tensor"])
def test_conv_refuses_complex_x_and_w(stencil, backend_name, native):
    x = np.ones((2, 1, NPIX), "complex64") * (1 + 2j)
    w = np.ones((1, 1, 9), "float32")
    as_input = (lambda a: _tensor(backend_name, a)) if native else (lambda a: a)
    _raises_without_warning(TypeError, r"^x is complex \(complex64\)", lambda: stencil.conv(as_input(x), w))
    _raises_without_warning(TypeError, r"^w is complex \(complex64\)",
                            lambda: stencil.conv(x.real.copy(), as_input(w.astype("complex64"))))


def test_filter_refuses_complex(stencil):
    maps, bank = np.ones((3, NPIX), "float32"), np.ones((2, 9), "float32")
    _raises_without_warning(TypeError, r"^maps is complex", lambda: stencil.filter(maps + 1j, bank))
    _raises_without_warning(TypeError, r"^bank is complex", lambda: stencil.filter(maps, bank + 1j))


def test_scattering_eval_refuses_complex_x_y_and_mask(backend_name):
    op = funct(KERNELSZ=3, NORIENT=2, backend=backend_name)
    m = np.random.default_rng(0).normal(size=12 * 4**2)
    _raises_without_warning(TypeError, r"^x is complex", lambda: op.eval(m + 1j))
    _raises_without_warning(TypeError, r"^x is complex", lambda: op.eval(_tensor(backend_name, m + 1j)))
    _raises_without_warning(TypeError, r"^y is complex", lambda: op.eval(m, m * 1j))
    _raises_without_warning(TypeError, r"^mask must hold real numbers", lambda: op.eval(m, mask=np.ones(m.size) + 0j))


def test_up_and_down_refuse_complex(backend_name):
    x = np.ones((1, NPIX), "complex128")
    _raises_without_warning(TypeError, r"^x is complex", lambda: fc.down(x, NSIDE, backend=backend_name))
    _raises_without_warning(TypeError, r"^x is complex", lambda: fc.up(x, NSIDE, backend=backend_name))


# ---- 6. empty dimensions ---------------------------------------------------------------------

def test_empty_batch_gives_empty_results_of_the_right_shape(stencil, backend_name):
    x = np.ones((0, 2, NPIX), "float32")
    y = stencil.conv(x, np.ones((2, 3, 9), "float32"))
    assert tuple(y.shape) == (0, 3, NPIX) and fc.get_backend(backend_name).is_native(y)
    g2 = fc.SphericalStencil(NSIDE, 3, n_gauges=2, backend=backend_name)
    assert tuple(g2.conv(x, np.ones((2, 3, 9), "float32")).shape) == (0, 6, NPIX)
    down, parents = fc.down(x, NSIDE, backend=backend_name)
    assert tuple(down.shape) == (0, 2, parents.size)
    assert tuple(fc.up(x, NSIDE, backend=backend_name).shape) == (0, 2, 4 * NPIX)


def test_network_forward_on_an_empty_batch_keeps_its_state(backend_name):
    net = HealpixUNet(in_nside=4, n_chan_in=2, chanlist=[4, 8], KERNELSZ=3, backend=backend_name)
    x = np.random.default_rng(0).normal(size=(2, 2, 192)).astype("float32")
    before = net.predict(x)
    y = net(_tensor(backend_name, x[:0]))  # training mode: batch norm must not average nothing
    assert tuple(y.shape) == (0, 1, 192)
    np.testing.assert_array_equal(net.predict(x), before)


def test_conv_refuses_zero_channels(stencil):
    with pytest.raises(ValueError, match=r"^w must have at least one output channel .*\(1, 0, 9\)"):
        stencil.conv(np.ones((2, 1, NPIX), "float32"), np.ones((1, 0, 9), "float32"))
    with pytest.raises(ValueError, match=r"^x must have at least one input channel"):
        stencil.conv(np.ones((2, 0, NPIX), "float32"), np.ones((0, 1, 9), "float32"))


def test_scattering_eval_of_no_map_is_a_clear_error(backend_name):
    op = funct(KERNELSZ=3, NORIENT=2, backend=backend_name)
    with pytest.raises(ValueError, match=r"^x must hold at least one map, got shape \(0, 192\)"):
        op.eval(np.ones((0, 192)))
    with pytest.raises(ValueError, match=r"^y must hold at least one map"):
        op.eval(np.ones((1, 192)), np.ones((0, 192)))


@pytest.mark.parametrize("call", [
    lambda: fc.SphericalStencil(NSIDE, 3, cell_ids=[], backend="numpy"),
    lambda: fc.down(np.ones(4), NSIDE, cell_ids=[], backend="numpy"),
    lambda: fc.up(np.ones(4), NSIDE, target_ids=[], backend="numpy"),
    lambda: fc.up(np.ones(4), NSIDE, cell_ids=np.array([], dtype=np.int64), backend="numpy"),
], ids=["stencil", "down", "up-target_ids", "up-int-cell_ids"])
def test_empty_id_lists_say_at_least_one_cell(call):
    with pytest.raises(ValueError, match=r"(cell_ids|target_ids) must hold at least one cell"):
        call()


# ---- 7. SphericalStencil.filter input checks -------------------------------------------------

def test_filter_accepts_host_data_and_matches_conv(stencil, backend_name):
    rng = np.random.default_rng(1)
    maps, bank = rng.normal(size=(3, NPIX)).astype("float32"), rng.normal(size=(2, 9)).astype("float32")
    out = stencil.filter(maps, bank)
    ref = stencil.conv(maps[:, None], bank[None])  # as the docstring states
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=1e-5, atol=1e-5)
    assert tuple(stencil.filter(maps[:0], bank).shape) == (0, 2, NPIX)


@pytest.mark.parametrize("maps_shape,bank_shape,match", [
    ((3, NPIX - 1), (2, 9), r"^maps must have shape \(L, 48\).*got shape \(3, 47\)"),
    ((NPIX,), (2, 9), r"^maps must have shape \(L, 48\).*got shape \(48,\)"),
    ((1, 3, NPIX), (2, 9), r"^maps must have shape \(L, 48\)"),
    ((3, NPIX), (2, 25), r"^bank must have shape \(C, 9\).*got shape \(2, 25\)"),
    ((3, NPIX), (9,), r"^bank must have shape \(C, 9\)"),
    ((3, NPIX), (0, 9), r"^bank must have shape \(C, 9\): C >= 1"),
])
def test_filter_shapes(stencil, maps_shape, bank_shape, match):
    with pytest.raises(ValueError, match=match):
        stencil.filter(np.ones(maps_shape, "float32"), np.ones(bank_shape, "float32"))


def test_filter_dtypes_and_frameworks(stencil, backend_name):
    maps, bank = np.ones((3, NPIX), "float32"), np.ones((2, 9), "float32")
    with pytest.raises(TypeError, match=r"^maps must be an array of numbers, got str"):
        stencil.filter("abc", bank)
    with pytest.raises(TypeError, match=r"^bank must be an array of numbers"):
        stencil.filter(maps, [["a"] * 9])
    if backend_name != "numpy":  # a tensor is never cast behind the user's back
        with pytest.raises(TypeError, match=r"^maps has dtype float64 but float32 was expected"):
            stencil.filter(_tensor(backend_name, maps.astype("float64")), bank)
    for other in BACKENDS:
        if other not in ("numpy", backend_name):
            with pytest.raises(TypeError, match=rf"^bank is a {other} tensor but this operation runs on the "
                                                rf"'{backend_name}' backend"):
                stencil.filter(maps, _tensor(other, bank))
