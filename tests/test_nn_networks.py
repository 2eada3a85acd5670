"""HealpixUNet and CNN: shapes, cell order, the same numbers on every backend, files, equivariance."""

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from conftest import AUTOGRAD_BACKENDS, BACKENDS, to_numpy
from foscat_core.nn import CNN, HealpixUNet

NSIDE = 8


def disc_ids(nside=NSIDE, radius=40.0, seed=0):
    ids = hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.3), np.radians(radius), nest=True).astype(np.int64)
    return np.random.default_rng(seed).permutation(ids)


def make(kind, backend, cell_ids=None, **kw):
    if kind == "unet":
        return HealpixUNet(NSIDE, 2, [4, 6, 8], cell_ids=cell_ids, backend=backend, out_channels=3, **kw)
    return CNN(NSIDE, 2, [5, 5], out_channels=3, cell_ids=cell_ids, backend=backend, **kw)


def n_cells(cell_ids):
    return 12 * NSIDE**2 if cell_ids is None else len(cell_ids)


@pytest.mark.parametrize("kind", ["unet", "cnn"])
@pytest.mark.parametrize("domain", ["full", "disc"])
def test_forward_shape_and_the_same_numbers_on_every_backend(kind, domain):
    ids = None if domain == "full" else disc_ids()
    x = np.random.default_rng(1).normal(size=(2, 2, n_cells(ids))).astype(np.float32)
    outs = {}
    for name in BACKENDS:
        net = make(kind, name, ids, G=2, gauge_type="cosmo")
        net.eval()
        y = net(x)
        assert net.backend.is_native(y) and tuple(y.shape) == (2, 3, n_cells(ids))
        outs[name] = to_numpy(y).astype(np.float64)
    ref = outs["numpy"]
    assert np.std(ref) > 0
    for name, y in outs.items():
        assert np.max(np.abs(y - ref)) <= 1e-5 * max(1.0, np.max(np.abs(ref))), name


@pytest.mark.parametrize("kind", ["unet", "cnn"])
def test_output_follows_the_input_cell_order(kind):
    """Permuting cell_ids and the input's cells alike permutes the output alike."""
    ids = disc_ids()
    perm = np.random.default_rng(3).permutation(len(ids))
    x = np.random.default_rng(2).normal(size=(1, 2, len(ids))).astype(np.float32)
    a = make(kind, "numpy", ids).eval()(x)
    b = make(kind, "numpy", ids[perm]).eval()(x[..., perm])
    np.testing.assert_allclose(b, a[..., perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def jax_leaves(state):
    import jax

    return jax.tree_util.tree_leaves(state)


def test_native_framework_objects(backend_name):
    net = make("unet", backend_name)
    if backend_name == "torch":
        import torch

        assert isinstance(net, torch.nn.Module) and isinstance(net, HealpixUNet)
        keys = set(net.state_dict())
        assert {"enc.0.conv1.weight", "enc.0.norm1.running_mean", "head.weight"} <= keys
        assert sum(p.numel() for p in net.parameters()) == net.n_parameters()
    elif backend_name == "jax":
        from flax import nnx

        assert isinstance(net, nnx.Module) and isinstance(net, HealpixUNet)
        params = jax_leaves(nnx.state(net, nnx.Param))
        assert sum(int(np.prod(v.shape)) for v in params) == net.n_parameters()
        assert len(jax_leaves(nnx.state(net, nnx.BatchStat))) > 0  # running statistics
    elif backend_name == "tensorflow":
        import tensorflow as tf

        assert isinstance(net, tf.Module) and isinstance(net, HealpixUNet)
        assert all(isinstance(v, tf.Variable) for v in net.trainable_variables)
        assert sum(int(np.prod(v.shape)) for v in net.trainable_variables) == net.n_parameters()
        assert len(net.variables) > len(net.trainable_variables)  # running statistics


@pytest.mark.skipif(not {"torch", "tensorflow"} <= set(BACKENDS), reason="needs torch and tensorflow")
@pytest.mark.parametrize("kind", ["unet", "cnn"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_torch_to_tensorflow_file_same_outputs_and_gradients(kind, train_mode, tmp_path):
    import tensorflow as tf
    import torch

    ids = disc_ids()
    rng = np.random.default_rng(4)
    net_t = make(kind, "torch", ids, seed=11)
    # Move the weights away from their initial values so the file really carries them.
    with torch.no_grad():
        for p in net_t.parameters():
            p.add_(torch.as_tensor(rng.normal(0, 0.1, size=tuple(p.shape)), dtype=p.dtype))
    path = tmp_path / "net.npz"
    net_t.save(path)
    net_f = type(net_t).load(path, backend="tensorflow")
    x = rng.normal(size=(2, 2, len(ids))).astype(np.float32)
    target = rng.normal(size=(2, 3, len(ids))).astype(np.float32)
    np.testing.assert_allclose(net_f.predict(x), net_t.predict(x), rtol=1e-5, atol=1e-5)

    net_t.train(train_mode)
    net_f.train(train_mode)
    loss_t = ((net_t(torch.as_tensor(x)) - torch.as_tensor(target)) ** 2).mean()
    loss_t.backward()
    with tf.GradientTape() as tape:
        loss_f = tf.reduce_mean((net_f(tf.constant(x)) - tf.constant(target)) ** 2)
    grads_f = tape.gradient(loss_f, net_f.parameters())
    assert abs(float(loss_t.detach()) - float(loss_f)) <= 1e-5 * abs(float(loss_t.detach()))
    names = [n for n, _ in net_t.named_variables() if n in dict(net_t.named_parameters())]
    assert len(names) == len(grads_f)
    # One scale for all: a conv bias followed by BatchNorm has a zero gradient up to round-off.
    scale = max(float(np.max(np.abs(p.grad.numpy()))) for p in net_t.parameters())
    for name, p_t, g_f in zip(names, net_t.parameters(), grads_f):
        assert np.max(np.abs(p_t.grad.numpy() - g_f.numpy())) <= 1e-4 * scale, name


def test_load_refuses_another_architecture_and_foreign_files(tmp_path):
    path = tmp_path / "cnn.npz"
    make("cnn", "numpy").save(path)
    with pytest.raises(ValueError, match="CNN"):
        HealpixUNet.load(path)
    bad = tmp_path / "other.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a foscat_core network"):
        CNN.load(bad)
    not_npz = tmp_path / "junk.npz"
    not_npz.write_bytes(b"junk")
    with pytest.raises(ValueError):
        CNN.load(not_npz)


def test_load_refuses_weights_that_do_not_match(tmp_path):
    path = tmp_path / "cnn.npz"
    make("cnn", "numpy").save(path)
    with np.load(path) as data:
        contents = dict(data)
    contents["head.weight"] = np.zeros((7, 7), np.float32)
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="head.weight"):
        CNN.load(path)


def test_save_is_atomic_and_keeps_the_exact_path(tmp_path):
    path = tmp_path / "model.weights"
    make("cnn", "numpy").save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.weights"]


@pytest.mark.parametrize("kind", ["unet", "cnn"])
def test_equivariance_under_a_quarter_turn_in_longitude(kind):
    """A phi-gauge network commutes with the exact NESTED permutation of a 90 degree rotation."""
    npix = 12 * NSIDE**2
    theta, phi = hp.pix2ang(NSIDE, np.arange(npix), nest=True)
    perm = hp.ang2pix(NSIDE, theta, phi + np.pi / 2, nest=True)
    assert np.array_equal(np.sort(perm), np.arange(npix))
    x = np.random.default_rng(5).normal(size=(1, 2, npix))
    rotated = np.empty_like(x)
    rotated[..., perm] = x
    net = make(kind, "numpy", dtype="float64").eval()
    y, y_rot = net(x), net(rotated)
    expected = np.empty_like(y)
    expected[..., perm] = y
    np.testing.assert_allclose(y_rot, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(chanlist=[]), "chanlist"),
        (dict(chanlist=[4, 0]), "chanlist"),
        (dict(chanlist=[4] * 6), "in_nside"),
        (dict(KERNELSZ=4), "kernel"),
        (dict(task="classify"), "task"),
        (dict(final_activation="tanh"), "final_activation"),
        (dict(down_type="median"), "down_type"),
        (dict(norm="layer"), "norm"),
        (dict(cell_ids=[0, 1, 12 * NSIDE**2]), "cell_ids"),
        (dict(in_nside=6), "nside"),
    ],
)
def test_unet_constructor_errors(kwargs, match):
    args = dict(in_nside=NSIDE, n_chan_in=2, chanlist=[4, 8], backend="numpy")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        HealpixUNet(**args)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_forward_input_errors(backend_name):
    net = make("unet", backend_name, disc_ids())
    n = len(disc_ids())
    with pytest.raises(ValueError, match="channels"):
        net(np.zeros((1, 3, n), np.float32))
    with pytest.raises(ValueError, match="cells"):
        net(np.zeros((1, 2, n + 1), np.float32))
    with pytest.raises(ValueError, match="shape"):
        net(np.zeros((2, n), np.float32))


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_torch_to_device_moves_the_geometry_too():
    """``.to(device)`` moves weights and the stencils behind them (checked with torch's "meta"
    device, which exists without a GPU); inputs left on the old device get a clear error."""
    import torch

    net = make("unet", "torch", disc_ids()).eval()
    n = len(disc_ids())
    assert net.to("meta") is net
    assert str(net.backend.device) == "meta"
    enc0 = net.enc[0]
    assert enc0.conv1.stencil is enc0.conv2.stencil  # shared stencils stay shared
    assert str(enc0.conv1.stencil.backend.device) == "meta"
    y = net(torch.zeros((2, 2, n), device="meta"))
    assert y.device.type == "meta" and tuple(y.shape) == (2, 3, n)
    with pytest.raises(ValueError, match="device"):
        net(torch.zeros((2, 2, n)))


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_torch_compile_gives_the_same_outputs():
    import torch

    net = make("cnn", "torch").eval()
    x = torch.as_tensor(np.random.default_rng(6).normal(size=(2, 2, 12 * NSIDE**2)).astype(np.float32))
    compiled = torch.compile(net, backend="aot_eager")  # traces forward and backward graphs
    np.testing.assert_allclose(compiled(x).detach().numpy(), net(x).detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_deepcopy_gives_an_independent_network_with_the_same_outputs(backend_name):
    import copy

    net = make("unet", backend_name, disc_ids()).eval()
    x = np.random.default_rng(7).normal(size=(1, 2, len(disc_ids()))).astype(np.float32)
    twin = copy.deepcopy(net)
    assert type(twin) is type(net) and twin.backend is net.backend
    np.testing.assert_array_equal(twin.predict(x), net.predict(x))
    name, variable = next((n, v) for n, v in twin.named_variables() if n.endswith("weight"))
    twin.fw.assign(variable, np.zeros(tuple(int(s) for s in variable.shape)))
    assert np.any(net.backend.to_numpy(dict(net.named_variables())[name]) != 0)  # the original kept its weights


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_torch_save_of_a_whole_network_round_trips(tmp_path):
    """torch.save(net) / torch.load work whatever the default backend is (the default stays numpy)."""
    import torch

    assert fc.get_backend().name == "numpy"
    net = make("unet", "torch", disc_ids()).eval()
    x = np.random.default_rng(8).normal(size=(2, 2, len(disc_ids()))).astype(np.float32)
    torch.save(net, tmp_path / "net.pt")
    loaded = torch.load(tmp_path / "net.pt", weights_only=False)
    assert isinstance(loaded, torch.nn.Module) and isinstance(loaded, HealpixUNet)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_casting_a_torch_network_casts_its_geometry_too():
    import torch

    net = make("cnn", "torch")
    x = np.random.default_rng(9).normal(size=(1, 2, 12 * NSIDE**2))
    y32 = net.predict(x.astype(np.float32))
    net = net.double()
    assert net.dtype == "float64"
    y64 = net.eval()(torch.as_tensor(x))
    assert y64.dtype == torch.float64
    np.testing.assert_allclose(y64.detach().numpy(), y32, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="float64"):
        net(torch.zeros((1, 2, 12 * NSIDE**2)))  # float32 input to a float64 network
