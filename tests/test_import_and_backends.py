"""Importing foscat_core imports no framework; backend selection, ownership and mixing."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import foscat_core as fc
from conftest import BACKENDS, assert_close, to_numpy

HAS_TORCH = "torch" in BACKENDS
HAS_TF = "tensorflow" in BACKENDS
NSIDE = 4
NPIX = 12 * NSIDE * NSIDE


def _run_python(code):
    env = dict(os.environ)
    env.pop("FOSCAT_CORE_BACKEND", None)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def restore_default_backend():
    yield
    fc.set_backend("numpy")


def test_import_pulls_in_no_framework():
    out = _run_python("""
        import sys
        import foscat_core, foscat_core.backends
        print(sorted(m for m in ("torch", "tensorflow", "jax", "keras") if m in sys.modules))
    """)
    assert out == "[]"


def test_numpy_work_pulls_in_no_framework():
    out = _run_python("""
        import sys
        import numpy as np
        import foscat_core as fc
        st = fc.SphericalStencil(2, 3, dtype="float64")
        y = st.conv(np.ones((1, 1, 48)), np.ones((1, 1, 9)) / 9)
        z, _ = fc.down(y, 2, mode="mean")
        fc.up(z, 1)
        fc.get_backend("numpy")
        print(sorted(m for m in ("torch", "tensorflow", "jax") if m in sys.modules), type(y).__module__)
    """)
    assert out == "[] numpy"


def test_default_backend_is_numpy():
    assert fc.get_backend().name == "numpy"


@pytest.mark.parametrize("name", BACKENDS)
def test_set_get_round_trip(name, restore_default_backend):
    bk = fc.set_backend(name)
    assert bk.name == name
    assert fc.get_backend() is bk
    assert fc.get_backend(name) is bk
    assert fc.get_backend().name == name
    st = fc.SphericalStencil(NSIDE, 3)
    assert st.backend is bk


@pytest.mark.parametrize("alias,name", [("np", "numpy"), ("NumPy", "numpy"), ("pytorch", "torch"),
                                        ("tf", "tensorflow"), ("TensorFlow", "tensorflow")])
def test_aliases(alias, name, restore_default_backend):
    if name not in BACKENDS:
        pytest.skip(f"{name} not installed")
    assert fc.get_backend(alias).name == name
    assert fc.set_backend(alias) is fc.get_backend(name)


def test_unknown_backend_leaves_default(restore_default_backend):
    fc.set_backend("numpy")
    with pytest.raises(ValueError, match="backend"):
        fc.set_backend("jax-but-not-yet")
    with pytest.raises(ValueError, match="backend"):
        fc.get_backend("pytorch2")
    assert fc.get_backend().name == "numpy"


def test_backend_objects_have_the_documented_interface(backend_name):
    bk = fc.get_backend(backend_name)
    assert bk.name == backend_name
    a = bk.asarray(np.arange(6.0).reshape(2, 3), dtype="float32")
    assert bk.is_native(a)
    assert bk.dtype_name(a) == "float32"
    back = bk.to_numpy(a)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, np.arange(6.0).reshape(2, 3))
    assert tuple(bk.xp.sum(a, axis=1).shape) == (2,)


@pytest.mark.skipif(not (HAS_TORCH and HAS_TF), reason="needs torch and tensorflow")
def test_objects_keep_their_backend(restore_default_backend):
    import tensorflow as tf
    import torch

    x = np.random.default_rng(0).normal(size=(1, 2, NPIX)).astype("float32")
    w = np.random.default_rng(1).normal(size=(2, 3, 9)).astype("float32")
    try:
        fc.set_backend("torch")
        st_torch = fc.SphericalStencil(NSIDE, 3)
        assert st_torch.backend.name == "torch"
        fc.set_backend("tensorflow")
        y_torch = st_torch.conv(x, w)
        assert isinstance(y_torch, torch.Tensor)
        st_tf = fc.SphericalStencil(NSIDE, 3)
        assert st_tf.backend.name == "tensorflow"
        y_tf = st_tf.conv(x, w)
        assert isinstance(y_tf, tf.Tensor)
        assert_close(y_tf, to_numpy(y_torch).astype(np.float64), "float32")
        # Ops on native tensors follow the tensor, not the default backend.
        z, _ = fc.down(y_torch, NSIDE)
        assert isinstance(z, torch.Tensor)
        fc.set_backend("torch")
        z_tf, _ = fc.down(y_tf, NSIDE)
        assert isinstance(z_tf, tf.Tensor)
        assert isinstance(fc.up(z_tf, NSIDE // 2), tf.Tensor)
        # A numpy map with no backend= follows the default.
        assert isinstance(fc.down(x, NSIDE)[0], torch.Tensor)
        # The TF stencil still returns TF tensors under the torch default.
        assert isinstance(st_tf.conv(x, w), tf.Tensor)
    finally:
        fc.set_backend("numpy")
    assert fc.get_backend().name == "numpy"


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_tensor_to_numpy_backend_op(requires_grad):
    """A torch tensor given to a numpy-backend object is either converted (same numbers, NumPy result)
    or rejected with a TypeError/ValueError that names the argument; never a silent wrong answer and
    never a framework-internal error."""
    import torch

    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 1, NPIX))
    w = rng.normal(size=(1, 2, 9))
    st = fc.SphericalStencil(NSIDE, 3, backend="numpy", dtype="float64")
    ref = st.conv(x, w)
    ref_down, _ = fc.down(x, NSIDE, backend="numpy")
    ref_up = fc.up(x, NSIDE, backend="numpy")
    xt = torch.from_numpy(x.copy()).requires_grad_(requires_grad)

    calls = [(lambda: st.conv(xt, w), ref),
             (lambda: fc.down(xt, NSIDE, backend="numpy")[0], ref_down),
             (lambda: fc.up(xt, NSIDE, backend="numpy"), ref_up)]
    for call, expected in calls:
        try:
            y = call()
        except (TypeError, ValueError) as err:
            assert re.search(r"\bx\b", str(err)), str(err)
        else:
            assert isinstance(y, np.ndarray)
            assert_close(y, expected, "float64")


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_torch_tensor_of_other_dtype_to_numpy_backend_is_not_silently_wrong():
    import torch

    st = fc.SphericalStencil(NSIDE, 3, backend="numpy", dtype="float64")
    x = torch.ones((1, 1, NPIX), dtype=torch.float32)
    try:
        y = st.conv(x, np.full((1, 1, 9), 1 / 9))
    except (TypeError, ValueError) as err:
        assert re.search(r"\bx\b", str(err)), str(err)
    else:
        assert isinstance(y, np.ndarray) and y.dtype == np.float64
        np.testing.assert_allclose(y, 1.0, rtol=1e-12)


def test_numpy_value_and_grad_raises():
    bk = fc.get_backend("numpy")
    assert bk.has_autograd is False
    with pytest.raises(NotImplementedError, match="torch") as info:
        bk.value_and_grad(lambda v: (v**2).sum(), np.ones(3))
    assert "tensorflow" in str(info.value)


def test_autograd_backends_value_and_grad(autograd_backend):
    bk = fc.get_backend(autograd_backend)
    assert bk.has_autograd is True
    x = bk.asarray(np.array([1.0, -2.0, 3.0]))
    value, grad = bk.value_and_grad(lambda v: bk.xp.sum(v * v * v), x)
    assert float(to_numpy(value)) == pytest.approx(1 - 8 + 27)
    np.testing.assert_allclose(to_numpy(grad), [3.0, 12.0, 27.0])
    # The input is left untouched (no grad flag leaks onto it).
    if autograd_backend == "torch":
        assert not x.requires_grad


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_torch_stencil_gradients_flow_through_module_parameters():
    import torch

    st = fc.SphericalStencil(NSIDE, 3, backend="torch", dtype="float64")
    dev = st.backend.device
    w = torch.nn.Parameter(torch.randn(1, 2, 9, dtype=torch.float64, device=dev))
    x = torch.randn(2, 1, NPIX, dtype=torch.float64, device=dev, requires_grad=True)
    loss = (st.conv(x, w) ** 2).sum()
    loss.backward()
    assert w.grad is not None and x.grad is not None
    assert w.grad.shape == w.shape and x.grad.shape == x.shape
    assert torch.isfinite(w.grad).all() and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_torch_backend_rejects_tensor_on_other_device():
    import torch

    bk = fc.get_backend("torch", device="cpu")
    assert fc.get_backend("torch", device="cpu") is bk
    st = fc.SphericalStencil(NSIDE, 3, backend=bk)
    # The "meta" device exists on every machine, so the mismatch is testable without a GPU.
    with pytest.raises(ValueError, match=r"^x: .*device meta"):
        st.conv(torch.zeros((1, 1, NPIX), device="meta"), np.zeros((1, 1, 9), "float32"))
