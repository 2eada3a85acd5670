"""Networks on JAX (flax.nnx modules, optax optimisers) against torch: forward, gradients, weight
files both ways, training, optimiser trajectories step for step, and a network inside jax.jit."""

import copy
import functools
import operator
import pickle

import numpy as np
import pytest

pytest.importorskip("flax")
torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from foscat_core.nn import CNN, GCNN, HealpixUNet, HealpixViT  # noqa: E402
from foscat_core.nn.training import _OPTIMIZERS  # noqa: E402

NSIDE = 4
N_FULL = 12 * NSIDE**2
REGION = np.random.default_rng(7).permutation(np.arange(40, 120))  # NESTED ids, shuffled
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def build(kind, backend, dtype="float32", **kw):
    """Four networks, each on another domain: a region, RING order, the full sky."""
    if kind == "unet":
        return HealpixUNet(NSIDE, 2, [3, 4], cell_ids=REGION, backend=backend, dtype=dtype, seed=1, **kw)
    if kind == "cnn":
        return CNN(NSIDE, 2, [3], G=2, nest=False, backend=backend, dtype=dtype, seed=1, **kw)
    if kind == "gcnn":
        return GCNN(nparam=1, chanlist=[2, 3], in_nside=NSIDE, backend=backend, dtype=dtype, seed=1, **kw)
    return HealpixViT(NSIDE, 2, 1, cell_ids=REGION, token_nside=2, embed_dim=8, depth=1, num_heads=2,
                      backend=backend, dtype=dtype, seed=1, **kw)


KINDS = ["unet", "cnn", "gcnn", "vit"]


def inputs(net, n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2, net.n_cells)).astype(net.dtype)


def host(net):
    return {name: np.array(net.backend.to_numpy(v)) for name, v in net.named_variables()}


def assert_close(got, ref, tol, what=""):
    scale = max(1.0, float(np.max(np.abs(ref))))
    assert np.max(np.abs(np.asarray(got, np.float64) - ref)) <= tol * scale, what


def _x64_mode(on):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", on)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def x64():
    """JAX 64-bit mode for one test (float64 networks need it), restored afterwards."""
    yield from _x64_mode(True)


@pytest.fixture
def no_x64():
    """JAX's default 32-bit mode for one test, whatever the environment sets."""
    yield from _x64_mode(False)


def test_modules_are_nnx_modules_with_params_and_batch_stats():
    net = CNN(NSIDE, 2, [3], backend="jax", seed=1)
    assert isinstance(net, nnx.Module) and isinstance(net, CNN)
    params = nnx.state(net, nnx.Param)
    n_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
    assert n_params == net.n_parameters() > 0
    stats = jax.tree.leaves(nnx.state(net, nnx.BatchStat))
    assert len(stats) == len(net.named_variables()) - len(net.parameters())  # running stats, normalisation
    # Copies and pickles predict alike and leave the original alone (evaluation mode is theirs).
    x = inputs(net)
    expected = net.predict(x)
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(other.predict(x), expected)
    np.testing.assert_array_equal(net.predict(x), expected)


def test_float64_needs_x64_mode(no_x64):
    with pytest.raises(ValueError, match="jax_enable_x64"):
        build("cnn", "jax", dtype="float64")


@pytest.mark.parametrize("kind", KINDS)
def test_float32_predictions_equal_torch(kind):
    ref, net = build(kind, "torch"), build(kind, "jax")
    x = inputs(net)
    out = net.predict(x)
    assert out.dtype == np.float32 and np.std(out) > 0
    assert_close(out, ref.predict(x), TOLERANCE["float32"], kind)


@pytest.mark.parametrize("kind", KINDS)
def test_float64_training_forward_and_gradients_equal_torch(kind, x64):
    """Training mode (batch statistics), then d loss / d every parameter, float64."""
    ref, net = build(kind, "torch", "float64"), build(kind, "jax", "float64")
    x = inputs(net)
    y = np.random.default_rng(1).normal(size=(len(x), net.out_channels, net.n_cells))
    loss = torch.mean((ref(x) - torch.as_tensor(y)) ** 2)
    loss.backward()
    value, grads = nnx.jit(nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2)))(net)
    assert_close(value, loss.item(), TOLERANCE["float64"])
    for name, variable in ref.named_variables():
        if variable.requires_grad:
            path = [int(k) if k.isdigit() else k for k in name.split(".")]
            got = functools.reduce(operator.getitem, path, grads)[...]
            assert_close(got, variable.grad.numpy(), TOLERANCE["float64"], name)
    # Both ran in training mode: the batch-norm running statistics moved alike.
    ref_vars, vars_ = host(ref), host(net)
    for name in ref_vars:
        assert_close(vars_[name], ref_vars[name], TOLERANCE["float64"], name)


def test_trained_files_predict_the_same_from_torch_to_jax_and_back(tmp_path):
    """Trained weights, batch-norm statistics and normalisation go both ways through one file."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 2, len(REGION)))
    x[0, 1, :5] = np.nan  # missing inputs
    y = 2.0 * np.nan_to_num(x[:, :1]) + 1.0
    kwargs = dict(n_epoch=1, batch_size=6, normalize=True, verbose=False)

    trained = build("unet", "torch", mask_missing=True)
    trained.fit(x, y, **kwargs)
    trained.save(tmp_path / "torch.npz")
    loaded = HealpixUNet.load(tmp_path / "torch.npz", backend="jax")
    assert loaded.normalization is not None
    assert_close(loaded.predict(x), trained.predict(x), TOLERANCE["float32"])

    trained = CNN(NSIDE, 2, [3], cell_ids=REGION, mask_missing=True, backend="jax", seed=2)
    trained.fit(x, y, **kwargs)
    trained.save(tmp_path / "jax.npz")
    loaded = CNN.load(tmp_path / "jax.npz", backend="torch")
    assert_close(loaded.predict(x), trained.predict(x), TOLERANCE["float32"])
    for name, value in host(trained).items():
        assert_close(host(loaded)[name], value, 0.0, name)


def test_fit_lowers_the_validation_loss():
    """Weighted samples, unlabelled (NaN) cells, normalisation."""
    rng = np.random.default_rng(4)
    x, xv = rng.normal(size=(12, 2, N_FULL)), rng.normal(size=(4, 2, N_FULL))
    y, yv = 1.5 * x[:, :1] - x[:, 1:] + 3.0, 1.5 * xv[:, :1] - xv[:, 1:] + 3.0
    y[:, :, :20] = np.nan
    net = CNN(NSIDE, 2, [4], backend="jax", seed=1)
    h = net.fit(x, y, x_val=xv, y_val=yv, n_epoch=6, batch_size=4, lr=2e-2, normalize=True,
                sample_weight=np.linspace(0.5, 1.5, 12), verbose=False)
    assert all(np.isfinite(h["train_loss"]))
    assert h["val_loss"][-1] < 0.5 * h["val_loss"][0]


@pytest.mark.parametrize("loss_fn, error, match", [(lambda p, t: (p - t) ** 2, ValueError, "must return a scalar"),
                                                    (lambda p, t: 1.0, TypeError, "scalar tensor")])
def test_a_loss_that_is_no_jax_scalar_is_refused(loss_fn, error, match):
    x = np.random.default_rng(9).normal(size=(2, 2, N_FULL))
    net = CNN(NSIDE, 2, [3], backend="jax", seed=1)
    before = host(net)
    with pytest.raises(error, match=match):
        net.fit(x, x[:, :1], n_epoch=1, loss_fn=loss_fn, verbose=False)
    for name, value in host(net).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimisers_follow_torch_step_for_step(optimizer, x64):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 2, N_FULL))
    y = 1.5 * x[:, :1] - x[:, 1:] + 3.0
    # norm="none": a bias ahead of a batch norm gets round-off gradients, which Adam amplifies.
    nets = {b: CNN(NSIDE, 2, [4], norm="none", backend=b, seed=5, dtype="float64") for b in ("torch", "jax")}
    hist = {b: net.fit(x, y, n_epoch=3, batch_size=3, lr=1e-2, weight_decay=1e-2, optimizer=optimizer, momentum=0.8,
                       lr_schedule="cosine", verbose=False) for b, net in nets.items()}
    np.testing.assert_allclose(hist["jax"]["train_loss"], hist["torch"]["train_loss"], rtol=1e-10)
    ref = host(nets["torch"])
    for name, value in host(nets["jax"]).items():
        assert_close(value, ref[name], 1e-10, name)
    states = {b: _OPTIMIZERS[net][1].state_arrays() for b, net in nets.items()}
    assert states["jax"].keys() == states["torch"].keys() and int(states["jax"]["step"]) == 6
    for key, value in states["torch"].items():
        if key != "step":  # torch's SGD counts no steps (it writes 0)
            assert_close(states["jax"][key], value, 1e-10, key)


def test_checkpoints_resume_across_torch_and_jax(tmp_path, x64):
    """Adam's moments and step count, written by one framework, continue on the other: the run
    equals an uninterrupted one. Batches come from a generator function."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(6, 2, N_FULL))
    y = x[:, :1] - x[:, 1:]

    def batches():
        yield from ((x[i:i + 3], y[i:i + 3]) for i in (0, 3))

    def build_cnn(backend):
        return CNN(NSIDE, 2, [3], norm="none", backend=backend, seed=1, dtype="float64")

    kwargs = dict(lr=1e-2, weight_decay=1e-3, verbose=False)
    whole = build_cnn("torch")
    expected = whole.fit(batches, n_epoch=3, **kwargs)["train_loss"]
    for first, then in (("torch", "jax"), ("jax", "torch")):
        path = tmp_path / f"{first}.ckpt.npz"
        build_cnn(first).fit(batches, n_epoch=1, checkpoint=path, **kwargs)
        resumed = build_cnn(then)
        history = resumed.fit(batches, n_epoch=3, checkpoint=path, resume=True, **kwargs)
        np.testing.assert_allclose(history["train_loss"], expected, rtol=1e-10, err_msg=f"{first} -> {then}")
        ref = host(whole)
        for name, value in host(resumed).items():
            assert_close(value, ref[name], 1e-10, f"{first} -> {then}: {name}")


def test_a_float32_network_trains_in_float32_in_64_bit_mode(x64):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 2, N_FULL))
    net = CNN(NSIDE, 2, [3], backend="jax", seed=1)
    net.fit(x, x[:, :1], n_epoch=1, batch_size=4, verbose=False)
    assert {net.backend.dtype_name(v) for _, v in net.named_variables()} == {"float32"}
    assert net.predict(x).dtype == np.float32
    assert {v.dtype for k, v in _OPTIMIZERS[net][1].state_arrays().items() if k != "step"} == {np.dtype("float32")}


def test_a_network_inside_jax_jit():
    net, ref = build("unet", "jax").eval(), build("unet", "torch").eval()
    x = inputs(net)
    xt = torch.tensor(x, requires_grad=True)
    out = ref(xt)
    torch.sum(out**2).backward()
    assert_close(jax.jit(lambda v: 2.0 * net(v))(x), 2.0 * out.detach().numpy(), 1e-5)
    # d sum(net(x)^2) / dx, JAX's against torch's.
    grad = jax.jit(jax.grad(lambda v: jnp.sum(net(v) ** 2)))(jnp.asarray(x))
    assert_close(grad, xt.grad.numpy(), 1e-5)
    # Training mode under nnx.jit: the running statistics are written back, as torch's.
    net.train()
    ref.train()
    nnx.jit(lambda m, v: m(v))(net, x)
    ref(x)
    ref_vars = host(ref)
    for name, value in host(net).items():
        assert_close(value, ref_vars[name], 1e-6, name)
