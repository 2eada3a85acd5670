"""Bad input raises ValueError or TypeError naming the argument, at the call that made the mistake."""

import numpy as np
import pytest

import foscat_core as fc
from conftest import BACKENDS

NSIDE = 4
NPIX = 12 * NSIDE * NSIDE
BAD_NSIDES = [
    (3, ValueError),
    (0, ValueError),
    (-4, ValueError),
    (2**30, ValueError),
    (4.0, TypeError),
    (True, TypeError),
    ("4", TypeError),
    (None, TypeError),
]
BAD_IDS = [
    ("negative", [-1, 0, 1], ValueError),
    ("too_large", [0, 1, NPIX], ValueError),
    ("duplicate", [3, 1, 3], ValueError),
    ("float", [0.0, 1.0, 2.0], TypeError),
    ("bool", [True, False], TypeError),
    ("2d", [[0, 1], [2, 3]], ValueError),
    ("empty", [], (ValueError, TypeError)),
    ("strings", ["a", "b"], TypeError),
]


def _stencil(backend="numpy", **kw):
    kw.setdefault("dtype", "float64")
    return fc.SphericalStencil(NSIDE, 3, backend=backend, **kw)


# ---- nside ----------------------------------------------------------------------------------

@pytest.mark.parametrize("nside,err", BAD_NSIDES, ids=[repr(v) for v, _ in BAD_NSIDES])
def test_bad_nside(nside, err):
    with pytest.raises(err, match="nside"):
        fc.Domain(nside)
    with pytest.raises(err, match="nside"):
        fc.SphericalStencil(nside, 3, backend="numpy")
    with pytest.raises(err, match="nside"):
        fc.down(np.zeros(48), nside, backend="numpy")
    with pytest.raises(err, match="nside"):
        fc.up(np.zeros(48), nside, backend="numpy")


def test_numpy_integer_nside_is_accepted():
    assert fc.Domain(np.int64(4)).nside == 4
    assert fc.Domain(np.int32(2)).npix == 48


def test_down_at_nside_1():
    with pytest.raises(ValueError, match="nside"):
        fc.down(np.zeros(12), 1, backend="numpy")
    with pytest.raises(ValueError, match="nside"):
        fc.Domain(1).parent()


def test_up_beyond_max_nside():
    with pytest.raises(ValueError, match="nside"):
        fc.up(np.zeros(1), 2**29, cell_ids=[0], backend="numpy")
    with pytest.raises(ValueError, match="nside"):
        fc.Domain(2**29, [0]).children()


def test_child_table_wrong_parent_nside():
    with pytest.raises(ValueError, match="parent"):
        fc.Domain(8).child_table(fc.Domain(8))


# ---- kernel size, gauges, dtype, mode, backend ----------------------------------------------

@pytest.mark.parametrize("kernel_sz", [2, 4, 0, -1, -3])
def test_bad_kernel_size_value(kernel_sz):
    with pytest.raises(ValueError, match="kernel_sz"):
        fc.SphericalStencil(NSIDE, kernel_sz, backend="numpy")


@pytest.mark.parametrize("kernel_sz", [3.0, True, "3", None])
def test_bad_kernel_size_type(kernel_sz):
    with pytest.raises((TypeError, ValueError), match="kernel_sz"):
        fc.SphericalStencil(NSIDE, kernel_sz, backend="numpy")


@pytest.mark.parametrize("gauge_type", ["theta", "PHI", "", None, 1])
def test_bad_gauge_type(gauge_type):
    with pytest.raises(ValueError, match="gauge_type"):
        fc.SphericalStencil(NSIDE, 3, gauge_type=gauge_type, backend="numpy")


@pytest.mark.parametrize("n_gauges", [0, -1, 1.5, True, "2"])
def test_bad_n_gauges(n_gauges):
    with pytest.raises((ValueError, TypeError), match="n_gauges"):
        fc.SphericalStencil(NSIDE, 3, n_gauges=n_gauges, backend="numpy")


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64", "double?", None, np.int64])
def test_bad_dtype(dtype):
    with pytest.raises((ValueError, TypeError), match="dtype"):
        fc.SphericalStencil(NSIDE, 3, dtype=dtype, backend="numpy")


@pytest.mark.parametrize("mode", ["min", "MAX", "sum", None, 0])
def test_bad_down_mode(mode):
    with pytest.raises(ValueError, match="mode"):
        fc.down(np.zeros(NPIX), NSIDE, mode=mode, backend="numpy")


@pytest.mark.parametrize("name", ["mxnet", "cupy", "", "numpyy"])
def test_unknown_backend_name(name):
    with pytest.raises(ValueError, match="backend"):
        fc.set_backend(name)
    with pytest.raises(ValueError, match="backend"):
        fc.get_backend(name)
    with pytest.raises(ValueError, match="backend"):
        fc.SphericalStencil(NSIDE, 3, backend=name)
    with pytest.raises(ValueError, match="backend"):
        fc.down(np.zeros(NPIX), NSIDE, backend=name)
    with pytest.raises(ValueError, match="backend"):
        fc.up(np.zeros(NPIX), NSIDE, backend=name)
    assert fc.get_backend().name == "numpy"  # a failed set_backend leaves the default alone


@pytest.mark.parametrize("backend", [3, 1.0, ["numpy"]])
def test_backend_of_wrong_type(backend):
    with pytest.raises((TypeError, ValueError), match="backend"):
        fc.SphericalStencil(NSIDE, 3, backend=backend)
    with pytest.raises((TypeError, ValueError), match="backend"):
        fc.down(np.zeros(NPIX), NSIDE, backend=backend)


def test_bad_device_for_numpy():
    with pytest.raises(ValueError, match="device"):
        fc.get_backend("numpy", device="cuda:0")


# ---- cell ids -------------------------------------------------------------------------------

@pytest.mark.parametrize("label,ids,err", BAD_IDS, ids=[b[0] for b in BAD_IDS])
def test_bad_cell_ids(label, ids, err):
    n = max(1, np.asarray(ids).size)
    with pytest.raises(err, match="cell_ids"):
        fc.Domain(NSIDE, ids)
    with pytest.raises(err, match="cell_ids"):
        fc.SphericalStencil(NSIDE, 3, cell_ids=ids, backend="numpy")
    with pytest.raises(err, match="cell_ids"):
        fc.down(np.zeros(n), NSIDE, cell_ids=ids, backend="numpy")
    with pytest.raises(err, match="cell_ids"):
        fc.up(np.zeros(n), NSIDE, cell_ids=ids, backend="numpy")


@pytest.mark.parametrize("label,ids,err", BAD_IDS, ids=[b[0] for b in BAD_IDS])
def test_bad_target_ids(label, ids, err):
    ids = [4 * NPIX if v == NPIX else v for v in ids] if label == "too_large" else ids
    with pytest.raises(err, match="target_ids"):
        fc.up(np.zeros(NPIX), NSIDE, target_ids=ids, backend="numpy")


def test_up_target_whose_parent_is_missing():
    # Parent of 21 is 5, parent of 8 is 2: 2 is not in cell_ids.
    with pytest.raises(ValueError, match="target_ids"):
        fc.up(np.array([1.0, 2.0]), NSIDE, cell_ids=[0, 5], target_ids=[21, 8], backend="numpy")


def test_up_target_at_the_coarse_nside_is_caught_when_out_of_range():
    # A fine id beyond 12*(2*nside)**2 is out of range at the fine level.
    with pytest.raises(ValueError, match="target_ids"):
        fc.up(np.zeros(NPIX), NSIDE, target_ids=[0, 12 * (2 * NSIDE) ** 2], backend="numpy")


# ---- conv shapes ----------------------------------------------------------------------------

@pytest.fixture(params=BACKENDS)
def conv_case(request):
    st = _stencil(backend=request.param, n_gauges=2)
    x = np.zeros((2, 3, NPIX))
    w = np.zeros((3, 4, 9))
    return st, x, w


def test_conv_accepts_the_good_case(conv_case):
    st, x, w = conv_case
    assert tuple(st.conv(x, w).shape) == (2, 8, NPIX)
    assert tuple(st.conv(x, np.stack([w, w])).shape) == (2, 8, NPIX)


def test_conv_channel_mismatch(conv_case):
    st, x, w = conv_case
    with pytest.raises(ValueError, match=r"w .*input channels|C_in"):
        st.conv(x, np.zeros((2, 4, 9)))
    with pytest.raises(ValueError, match=r"w .*input channels|C_in"):
        st.conv(x, np.zeros((2, 2, 4, 9)))


@pytest.mark.parametrize("shape", [(NPIX,), (3, NPIX), (1, 2, 3, NPIX)])
def test_conv_wrong_rank_of_x(conv_case, shape):
    st, _, w = conv_case
    with pytest.raises(ValueError, match=r"\bx\b"):
        st.conv(np.zeros(shape), w)


@pytest.mark.parametrize("shape", [(9,), (3, 9), (1, 2, 3, 4, 9)])
def test_conv_wrong_rank_of_w(conv_case, shape):
    st, x, _ = conv_case
    with pytest.raises(ValueError, match=r"\bw\b"):
        st.conv(x, np.zeros(shape))


@pytest.mark.parametrize("taps", [1, 8, 10, 25])
def test_conv_wrong_number_of_taps(conv_case, taps):
    st, x, _ = conv_case
    with pytest.raises(ValueError, match="w .*taps|P="):
        st.conv(x, np.zeros((3, 4, taps)))


def test_conv_wrong_number_of_gauges(conv_case):
    st, x, w = conv_case
    with pytest.raises(ValueError, match="w .*G=2"):
        st.conv(x, np.stack([w, w, w]))


@pytest.mark.parametrize("n", [NPIX - 1, NPIX + 1, 48])
def test_conv_map_length_mismatch(conv_case, n):
    st, _, w = conv_case
    with pytest.raises(ValueError, match=r"\bx\b"):
        st.conv(np.zeros((2, 3, n)), w)


def test_conv_map_length_mismatch_regional():
    st = fc.SphericalStencil(NSIDE, 3, cell_ids=np.arange(10, 40), backend="numpy", dtype="float64")
    with pytest.raises(ValueError, match=r"\bx\b"):
        st.conv(np.zeros((1, 1, NPIX)), np.zeros((1, 1, 9)))


def test_conv_numpy_input_is_converted_to_the_stencil_dtype(backend_name):
    bk = fc.get_backend(backend_name)
    st = _stencil(backend=backend_name, dtype="float32")
    y = st.conv(np.ones((1, 1, NPIX), dtype=np.float64), np.ones((1, 1, 9), dtype=np.float64))
    assert bk.dtype_name(y) == "float32"


def test_conv_framework_tensor_of_wrong_dtype(autograd_backend):
    backend_name = autograd_backend
    bk = fc.get_backend(backend_name)
    st = _stencil(backend=backend_name, dtype="float32")
    x64 = bk.asarray(np.zeros((1, 1, NPIX)), dtype="float64")
    w32 = bk.asarray(np.zeros((1, 1, 9)), dtype="float32")
    with pytest.raises(TypeError, match=r"\bx\b"):
        st.conv(x64, w32)
    with pytest.raises(TypeError, match=r"\bw\b"):
        st.conv(bk.asarray(np.zeros((1, 1, NPIX)), dtype="float32"), bk.asarray(np.zeros((1, 1, 9)), dtype="float64"))


def test_conv_non_numeric_input():
    st = _stencil()
    with pytest.raises(TypeError, match=r"\bx\b"):
        st.conv([["a"] * NPIX], np.zeros((1, 1, 9)))
    with pytest.raises(TypeError, match=r"\bw\b"):
        st.conv(np.zeros((1, 1, NPIX)), "kernel")


# ---- down / up map length -------------------------------------------------------------------

@pytest.mark.parametrize("n", [NPIX - 1, NPIX + 4, 4 * NPIX])
def test_down_map_length_mismatch(backend_name, n):
    with pytest.raises(ValueError, match=r"\bx\b"):
        fc.down(np.zeros((2, n)), NSIDE, backend=backend_name)
    with pytest.raises(ValueError, match=r"\bx\b"):
        fc.down(np.zeros((2, n)), NSIDE, cell_ids=np.arange(16), backend=backend_name)


def test_down_scalar_map(backend_name):
    with pytest.raises(ValueError, match=r"\bx\b"):
        fc.down(np.float64(1.0), NSIDE, backend=backend_name)


@pytest.mark.parametrize("n", [NPIX - 1, NPIX + 1, 4 * NPIX])
def test_up_map_length_mismatch(backend_name, n):
    with pytest.raises(ValueError, match=r"\bx\b"):
        fc.up(np.zeros((2, n)), NSIDE, backend=backend_name)
    with pytest.raises(ValueError, match=r"\bx\b"):
        fc.up(np.zeros((2, n)), NSIDE, cell_ids=np.arange(5), backend=backend_name)
