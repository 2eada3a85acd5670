"""``checkpointing=True``: the same training step (loss, gradients, weights and batch-norm
statistics after it), the same predictions, blocks really recomputed, kept through save/load."""

import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS
from foscat_core.nn import CNN, HealpixUNet
from foscat_core.nn.unet import DoubleConv

NSIDE = 4
TOL = {"float32": 1e-6, "float64": 1e-10}


def _data(dtype, n=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 1, 12 * NSIDE**2))
    return x.astype(dtype), (2.0 * x + np.roll(x, 5, axis=2)).astype(dtype)


def _sgd_step(cls, backend, dtype, checkpointing, **kw):
    """One plain SGD step (lr 1, no momentum, no decay) on the whole batch: the weights move by
    minus the gradient. Returns (network, loss, weights before, weights and states after)."""
    x, y = _data(dtype)
    net = cls(NSIDE, 1, [4, 8], backend=backend, dtype=dtype, seed=2, checkpointing=checkpointing, **kw)
    before = {k: net.backend.to_numpy(v).astype(np.float64) for k, v in net.named_variables()}
    history = net.fit(x, y, n_epoch=1, batch_size=len(x), lr=1.0, optimizer="sgd", momentum=0.0, weight_decay=0.0,
                      verbose=False)
    after = {k: net.backend.to_numpy(v).astype(np.float64) for k, v in net.named_variables()}
    return net, history["train_loss"][0], before, after


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cls", [HealpixUNet, CNN])
@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_a_training_step_is_the_same_with_checkpointing(backend, cls, dtype):
    plain, loss, w0, w1 = _sgd_step(cls, backend, dtype, False)
    ckpt, loss_c, w0_c, w1_c = _sgd_step(cls, backend, dtype, True)
    tol = TOL[dtype]
    assert loss_c == pytest.approx(loss, rel=tol, abs=tol)
    assert loss > 1.0  # a real step: the untrained network is far from the targets
    for name in w0:
        grad, grad_c = w0[name] - w1[name], w0_c[name] - w1_c[name]  # lr = 1
        np.testing.assert_allclose(grad_c, grad, rtol=tol, atol=tol, err_msg=name)
        # Weights and batch-norm statistics (updated once, not again by the recomputation).
        np.testing.assert_allclose(w1_c[name], w1[name], rtol=tol, atol=tol, err_msg=name)
    moved = [name for name in w0 if name.endswith("running_mean") and np.abs(w1[name] - w0[name]).max() > 1e-3]
    assert len(moved) == (6 if cls is HealpixUNet else 2)  # every batch norm
    # Weights within tol; outputs of order 5 computed from them (XLA fuses the recomputation
    # differently from the forward) within 10 tol.
    x, _ = _data(dtype, 2)
    np.testing.assert_allclose(ckpt.predict(x), plain.predict(x), rtol=10 * tol, atol=10 * tol)


def _count_double_conv_calls(monkeypatch):
    calls = []
    forward = DoubleConv.forward

    def counted(self, x, *args):
        calls.append(1)
        return forward(self, x, *args)

    monkeypatch.setattr(DoubleConv, "forward", counted)
    return calls


@pytest.mark.parametrize("backend", [b for b in ("torch", "tensorflow") if b in AUTOGRAD_BACKENDS])
def test_the_blocks_are_recomputed_in_the_backward_pass(backend, monkeypatch):
    """Three DoubleConv blocks: run once each without checkpointing; with it the two encoder
    blocks run twice (their block-level recomputation) and the last decoder block once, its
    stages checkpointed inside it (a TensorFlow step is traced once, so its count is of traced
    calls)."""
    counts = {}
    for checkpointing in (False, True):
        calls = _count_double_conv_calls(monkeypatch)
        _sgd_step(HealpixUNet, backend, "float32", checkpointing)
        counts[checkpointing] = len(calls)
    assert counts == {False: 3, True: 5}


def test_jax_blocks_run_under_jax_checkpoint(monkeypatch):
    if "jax" not in AUTOGRAD_BACKENDS:
        pytest.skip("jax is not installed")
    import jax

    wrapped = []
    checkpoint = jax.checkpoint

    def spy(fn, *args, **kwargs):
        wrapped.append(fn)
        return checkpoint(fn, *args, **kwargs)

    monkeypatch.setattr(jax, "checkpoint", spy)
    _sgd_step(HealpixUNet, "jax", "float32", False)
    assert wrapped == []
    _sgd_step(HealpixUNet, "jax", "float32", True)
    # The 2 encoder blocks (not the last decoder block: its backward runs first), and inside every
    # block each of its 2 conv -> norm -> ReLU stages.
    names = sorted(fn.__name__ for fn in wrapped)
    assert names == sorted(["_apply"] * 2 + ["_stage"] * 5 + ["_up_stage"]), names


def test_torch_keeps_fewer_activations_for_the_backward_pass():
    """Bytes of the tensors autograd keeps for the backward pass of one training forward."""
    if "torch" not in AUTOGRAD_BACKENDS:
        pytest.skip("torch is not installed")
    import torch

    x = torch.as_tensor(np.random.default_rng(0).normal(size=(2, 1, 12 * 8**2)).astype("float32"))
    kept = {}
    for checkpointing in (False, True):
        net = HealpixUNet(8, 1, [8, 16], backend="torch", seed=2, checkpointing=checkpointing)
        sizes = []

        def pack(t):
            sizes.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(x)
        kept[checkpointing] = sum(sizes)
    assert kept[True] < 0.5 * kept[False], kept


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_evaluation_mode_and_no_grad_call_the_blocks_plainly(backend):
    x, _ = _data("float32", 2)
    plain = HealpixUNet(NSIDE, 1, [4, 8], backend=backend, seed=2)
    ckpt = HealpixUNet(NSIDE, 1, [4, 8], backend=backend, seed=2, checkpointing=True)
    np.testing.assert_array_equal(ckpt.predict(x), plain.predict(x))


@pytest.mark.parametrize("cls", [HealpixUNet, CNN])
def test_the_option_survives_save_and_load(cls, tmp_path):
    net = cls(NSIDE, 1, [4, 8], backend="numpy", seed=2, checkpointing=True)
    assert net.checkpointing is True and net.config["checkpointing"] is True
    net.save(tmp_path / "net.npz")
    back = cls.load(tmp_path / "net.npz", backend="numpy")
    assert back.checkpointing is True
    x, _ = _data("float32", 2)
    np.testing.assert_array_equal(back.predict(x), net.predict(x))


def test_without_it_the_config_and_file_are_as_before(tmp_path):
    """The default writes no ``checkpointing`` key, so code that predates the option (which
    refuses unknown config keys) still reads the file."""
    net = HealpixUNet(NSIDE, 1, [4, 8], backend="numpy", seed=2)
    assert net.checkpointing is False and "checkpointing" not in net.config
    net.save(tmp_path / "net.npz")
    assert HealpixUNet.load(tmp_path / "net.npz", backend="numpy").checkpointing is False


@pytest.mark.parametrize("cls", [HealpixUNet, CNN])
@pytest.mark.parametrize("bad", [1, "yes", None])
def test_a_value_that_is_not_a_bool_is_a_type_error(cls, bad):
    with pytest.raises(TypeError, match="checkpointing must be True or False"):
        cls(NSIDE, 1, [4, 8], backend="numpy", checkpointing=bad)


def test_tensorflow_eager_gradients_and_statistics_are_the_same():
    """Outside a tf.function recompute_grad runs eagerly: the same gradients, and the batch-norm
    statistics updated once."""
    if "tensorflow" not in AUTOGRAD_BACKENDS:
        pytest.skip("tensorflow is not installed")
    import tensorflow as tf

    x, y = _data("float64")
    out = {}
    for checkpointing in (False, True):
        net = HealpixUNet(NSIDE, 1, [4, 8], backend="tensorflow", dtype="float64", seed=2, checkpointing=checkpointing)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((net(x) - y) ** 2)
        grads = tape.gradient(loss, net.parameters())
        stats = [v.numpy() for name, v in net.named_variables() if "running" in name]
        out[checkpointing] = (float(loss), [g.numpy() for g in grads], stats)
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-12)
    for a, b in zip(out[True][1] + out[True][2], out[False][1] + out[False][2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def _gcnn(**kw):
    from foscat_core.nn import GCNN

    return GCNN(nparam=1, chanlist=[1, 4, 4], in_nside=NSIDE, seed=2, **kw)


def _vit(**kw):
    from foscat_core.nn import HealpixViT

    return HealpixViT(NSIDE, 1, 1, token_nside=1, embed_dim=8, num_heads=2, depth=2, seed=2, **kw)


@pytest.mark.parametrize("make", [_gcnn, _vit], ids=["GCNN", "HealpixViT"])
def test_gcnn_and_vit_steps_are_the_same_with_checkpointing(make, tmp_path):
    """On torch: the framework's checkpointing itself is tested above on every backend."""
    if "torch" not in AUTOGRAD_BACKENDS:
        pytest.skip("torch is not installed")
    backend = "torch"
    x, y = _data("float64")
    results = []
    for checkpointing in (False, True):
        net = make(backend=backend, dtype="float64", checkpointing=checkpointing)
        before = {k: net.backend.to_numpy(v).copy() for k, v in net.named_variables()}
        loss = net.fit(x, y, n_epoch=1, batch_size=len(x), lr=1.0, optimizer="sgd", momentum=0.0, weight_decay=0.0,
                       verbose=False)["train_loss"][0]
        after = {k: net.backend.to_numpy(v) for k, v in net.named_variables()}
        results.append((net, loss, before, after))
    (_, loss, w0, w1), (ckpt, loss_c, _, w1_c) = results
    assert loss_c == pytest.approx(loss, rel=1e-10)
    assert any(np.abs(w1[k] - w0[k]).max() > 1e-6 for k in w0)  # a real step
    for name in w1:
        np.testing.assert_allclose(w1_c[name], w1[name], rtol=1e-10, atol=1e-10, err_msg=name)
    assert ckpt.checkpointing is True and ckpt.config["checkpointing"] is True
    ckpt.save(tmp_path / "net.npz")
    assert type(ckpt).load(tmp_path / "net.npz", backend="numpy").checkpointing is True


@pytest.mark.parametrize("n_gauges", [1, 2])
@pytest.mark.parametrize("backend", ["numpy", *AUTOGRAD_BACKENDS])
def test_forward_parts_is_the_conv_of_the_concatenation(backend, n_gauges):
    """What a checkpointed decoder block runs instead of concatenating: the same numbers."""
    import foscat_core as fc
    from foscat_core.nn import SphericalConv

    st = fc.SphericalStencil(NSIDE, 3, n_gauges=n_gauges, backend=backend, dtype="float64")
    conv = SphericalConv(5, 3, st, seed=1)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, st.n_cells)), rng.normal(size=(2, 2, st.n_cells))
    whole = conv(np.concatenate([a, b], axis=1))
    parts = conv.forward_parts([st.backend.asarray(a), st.backend.asarray(b)])
    np.testing.assert_allclose(st.backend.to_numpy(parts), st.backend.to_numpy(whole), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"parts have \[3, 3\] channels, 6 in all, but this SphericalConv expects 5"):
        conv.forward_parts([a, a])


def test_torch_contracts_first_only_while_its_temporary_is_small(monkeypatch):
    """16 -> 4 channels contracts first (an N * P * C_out temporary); over the byte limit it
    interpolates first instead (cache-sized blocks), with the same numbers."""
    if "torch" not in AUTOGRAD_BACKENDS:
        pytest.skip("torch is not installed")
    import torch

    import foscat_core as fc
    from foscat_core.backends.torch import contract

    x = np.random.default_rng(0).normal(size=(2, 16, 12 * NSIDE**2))
    w = np.random.default_rng(1).normal(size=(16, 4, 9))
    out, kinds, default = {}, {}, contract._CONTRACT_FIRST_MAX_BYTES
    for limit in (default, 0):
        monkeypatch.setattr(contract, "_CONTRACT_FIRST_MAX_BYTES", limit)
        fc.clear_memory_cache()
        st = fc.SphericalStencil(NSIDE, 3, backend="torch", dtype="float64")
        xt = torch.tensor(x, requires_grad=True)
        y = st.conv(xt, torch.as_tensor(w))
        (y * y).sum().backward()
        out[limit] = (y.detach().numpy(), xt.grad.numpy())
        kinds[limit] = sorted(kind for kind, _ in st.operators()[0]._tables)
    assert kinds == {default: ["adjoint", "contract"], 0: ["adjoint", "interp"]}
    for a, b in zip(out[0], out[default]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
