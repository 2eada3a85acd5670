"""Issue 11: a device that does not exist is a ValueError when the backend is made, never a silent fallback."""

import importlib.util

import numpy as np
import pytest

import foscat_core as fc
from foscat_core.backends import get_backend, set_backend

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
needs_tf = pytest.mark.skipif(not HAS_TF, reason="tensorflow is not installed")


@pytest.fixture
def default_backend_restored():
    from foscat_core.backends import _default

    saved = dict(_default)
    yield
    _default.update(saved)


# --- torch -------------------------------------------------------------------------------------
@needs_torch
def test_torch_missing_cuda_device_names_the_devices_that_exist():
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 on a CPU-only machine)
    with pytest.raises(ValueError, match=rf"device '{missing}' does not exist on this machine; torch sees \['cpu'"):
        get_backend("torch", device=missing)


@needs_torch
def test_torch_cuda_index_checked_against_the_device_count(monkeypatch):
    import torch

    from foscat_core.backends.torch.backend import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"'cuda:3' does not exist .* \['cpu', 'cuda:0', 'cuda:1'\]"):
        check_device(torch, "cuda:3")
    assert check_device(torch, "cuda:1") == torch.device("cuda:1")
    # An index-less "cuda" is the current device, as its tensors report it ("cuda:0", not "cuda").
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert check_device(torch, "cuda") == torch.device("cuda:1")


@needs_torch
@pytest.mark.parametrize("device", ["garbage", "cuda:x", ""])
def test_torch_malformed_device_is_a_value_error(device):
    with pytest.raises(ValueError, match=r"device must name a torch device such as 'cpu' or 'cuda:0'"):
        get_backend("torch", device=device)


@needs_torch
@pytest.mark.parametrize("device", ["cpu:3", "xpu:0"])
def test_torch_other_missing_devices(device):
    with pytest.raises(ValueError, match=rf"device '{device}' does not exist"):
        get_backend("torch", device=device)


@needs_torch
def test_torch_meta_device_exists_everywhere():
    bk = get_backend("torch", device="meta")
    assert bk.device.type == "meta"
    assert bk.asarray(np.zeros(3), dtype="float32").device.type == "meta"


@needs_torch
def test_torch_cpu_0_is_the_cpu_backend():
    import torch

    bk = get_backend("torch", device="cpu:0")
    assert bk is get_backend("torch", device="cpu")
    assert bk.asarray(torch.zeros(2)).shape == (2,)  # CPU tensors report "cpu", and are accepted


@needs_torch
def test_set_backend_checks_the_device(default_backend_restored):
    set_backend("numpy")
    with pytest.raises(ValueError, match="does not exist"):
        set_backend("torch", device="cuda:99")
    with pytest.raises(ValueError, match="must name a torch device"):
        fc.set_backend("torch", device="garbage")
    assert get_backend().name == "numpy"  # the default is unchanged by a failed call


# --- TensorFlow --------------------------------------------------------------------------------
@needs_tf
def test_tensorflow_malformed_device_names_the_logical_devices():
    with pytest.raises(ValueError, match=r"such as '/CPU:0' or '/GPU:0' \(this machine has \['/device:CPU:0'"):
        get_backend("tensorflow", device="garbage")


@needs_tf
def test_tensorflow_missing_gpu_is_a_value_error():
    import tensorflow as tf

    missing = f"/GPU:{len(tf.config.list_logical_devices('GPU'))}"
    with pytest.raises(ValueError, match=r"does not exist on this machine; tf.config.list_logical_devices\(\) gives"):
        get_backend("tensorflow", device=missing)
    with pytest.raises(ValueError, match="does not exist"):
        get_backend("tensorflow", device="/CPU:1")


@needs_tf
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_tensorflow_torch_style_name_suggests_gpu_syntax(device):
    with pytest.raises(ValueError, match=r"torch device name; TensorFlow names GPUs '/GPU:0'"):
        get_backend("tensorflow", device=device)


@needs_tf
def test_tensorflow_device_must_be_a_string():
    with pytest.raises(TypeError, match="device must be a TensorFlow device name"):
        get_backend("tensorflow", device=0)


@needs_tf
@pytest.mark.parametrize("device", ["cpu", "/CPU:0", "/device:CPU:0", "CPU:0"])
def test_tensorflow_cpu_spellings_are_one_backend(device):
    bk = get_backend("tensorflow", device=device)
    assert bk.device == "/CPU:0"
    assert bk is get_backend("tensorflow", device="/CPU:0")
    assert "CPU:0" in bk.asarray(np.zeros(2)).device


@needs_tf
def test_tensorflow_set_backend_checks_the_device(default_backend_restored):
    set_backend("numpy")
    with pytest.raises(ValueError, match="torch device name"):
        set_backend("tensorflow", device="cuda")
    assert get_backend().name == "numpy"


def test_numpy_refuses_other_devices():
    with pytest.raises(ValueError, match="device must be None or 'cpu' for the numpy backend"):
        get_backend("numpy", device="cuda")


@needs_torch
@pytest.mark.parametrize("kind", ["cnn", "unet"])
def test_networks_follow_the_device_given_to_set_backend(kind, default_backend_restored):
    import torch

    from foscat_core.nn import CNN, HealpixUNet

    set_backend("torch", device="meta")  # exists everywhere: shapes only
    net = CNN(4, 1, [4]) if kind == "cnn" else HealpixUNet(4, 1, [4, 8])
    assert str(net.backend.device) == "meta"
    assert {p.device.type for p in net.parameters()} == {"meta"}
    assert net(torch.zeros(2, 1, 192, device="meta")).device.type == "meta"
    set_backend("torch", device="cpu")
    assert next(iter(type(net)(4, 1, [4] if kind == "cnn" else [4, 8]).parameters())).device.type == "cpu"


@needs_tf
def test_the_default_device_does_not_leak_into_another_framework(default_backend_restored):
    from foscat_core.nn import CNN

    set_backend("torch", device="meta") if HAS_TORCH else None
    net = CNN(4, 1, [4], backend="tensorflow")
    assert net.backend.name == "tensorflow" and "CPU" in str(net.backend.device).upper()
