"""GCNN: shapes, cell order, the same numbers on every backend, files, gradients, training, errors."""

import healpy as hp
import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, BACKENDS, TOLERANCE, to_numpy
from foscat_core.nn import CNN
from foscat_core.nn.gcnn import GCNN, WaveletConv

NSIDE = 8
NPIX = 12 * NSIDE**2
BOTH = pytest.mark.skipif(not {"torch", "tensorflow"} <= set(BACKENDS), reason="needs torch and tensorflow")


def disc_ids(radius=40.0, seed=0):
    ids = hp.query_disc(NSIDE, hp.ang2vec(np.pi / 2, 0.3), np.radians(radius), nest=True).astype(np.int64)
    return np.random.default_rng(seed).permutation(ids)


def make(backend, cell_ids=None, **kw):
    args = dict(nparam=3, chanlist=[2, 6, 5], in_nside=NSIDE, cell_ids=cell_ids, backend=backend)
    args.update(kw)
    return GCNN(**args)


def n_cells(cell_ids):
    return NPIX if cell_ids is None else len(cell_ids)


def out_shape(batch, cell_ids, pooled):
    return (batch, 3) if pooled else (batch, 3, n_cells(cell_ids))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("domain", ["full", "disc"])
@pytest.mark.parametrize("pooled", [False, True])
def test_forward_shapes_and_the_same_numbers_on_every_backend(dtype, domain, pooled):
    ids = None if domain == "full" else disc_ids()
    x = np.random.default_rng(1).normal(size=(2, 2, n_cells(ids))).astype(dtype)
    outs = {}
    for name in BACKENDS:
        net = make(name, ids, global_pool=pooled, dtype=dtype, seed=7)
        y = net(x)
        assert net.backend.is_native(y) and tuple(y.shape) == out_shape(2, ids, pooled)
        outs[name] = to_numpy(y).astype(np.float64)
    ref = outs["numpy"]
    assert np.std(ref) > 0
    for name, y in outs.items():
        assert np.max(np.abs(y - ref)) <= TOLERANCE[dtype] * max(1.0, np.max(np.abs(ref))), name


@pytest.mark.parametrize("kw", [dict(n_scales=2), dict(features="complex"), dict(n_scales=3, features="complex")])
def test_multiscale_and_complex_features_agree_across_backends(kw):
    ids = disc_ids()
    x = np.random.default_rng(2).normal(size=(2, 2, len(ids)))
    outs = [to_numpy(make(name, ids, dtype="float64", **kw)(x)) for name in BACKENDS]
    assert outs[0].shape == (2, 3, len(ids))
    for y in outs[1:]:
        np.testing.assert_allclose(y, outs[0], rtol=0, atol=1e-10 * max(1.0, np.max(np.abs(outs[0]))))
    base, wider = make("numpy", ids), make("numpy", ids, **kw)
    assert wider.transform.n_features > base.transform.n_features
    assert wider.n_parameters() > base.n_parameters()


@pytest.mark.parametrize("pooled", [False, True])
def test_output_follows_the_input_cell_order(pooled):
    """Permuting cell_ids and the input's cells alike permutes a per-cell output alike and leaves a
    pooled one unchanged."""
    ids = disc_ids()
    perm = np.random.default_rng(3).permutation(len(ids))
    x = np.random.default_rng(2).normal(size=(1, 2, len(ids)))
    a = make("numpy", ids, global_pool=pooled, n_scales=2, dtype="float64")(x)
    b = make("numpy", ids[perm], global_pool=pooled, n_scales=2, dtype="float64")(x[..., perm])
    np.testing.assert_allclose(b, a if pooled else a[..., perm], rtol=1e-10, atol=1e-10)


def test_equivariance_under_a_quarter_turn_in_longitude():
    theta, phi = hp.pix2ang(NSIDE, np.arange(NPIX), nest=True)
    perm = hp.ang2pix(NSIDE, theta, phi + np.pi / 2, nest=True)
    x = np.random.default_rng(5).normal(size=(1, 2, NPIX))
    rotated = np.empty_like(x)
    rotated[..., perm] = x
    net = make("numpy", dtype="float64", n_scales=2)
    y, y_rot = net(x), net(rotated)
    expected = np.empty_like(y)
    expected[..., perm] = y
    np.testing.assert_allclose(y_rot, expected, rtol=1e-9, atol=1e-9)
    pooled = make("numpy", dtype="float64", global_pool=True)
    np.testing.assert_allclose(pooled(rotated), pooled(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_native_framework_objects_hold_only_the_mixing_weights(backend_name):
    net = make(backend_name, global_pool=True)
    assert isinstance(net.layers[0], WaveletConv)
    names = [n for n, _ in net.named_variables()]
    assert names == ["data_norm.x_mean", "data_norm.x_std", "data_norm.y_mean", "data_norm.y_std", "data_norm.is_set",
                     "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "head.weight", "head.bias"]
    f = net.transform.n_features
    assert f == 4 + 1
    assert net.n_parameters() == 6 * 2 * f + 6 + 5 * 6 * f + 5 + 3 * 5 + 3
    if backend_name == "torch":
        import torch

        assert isinstance(net, torch.nn.Module) and isinstance(net, GCNN)
        assert list(net.state_dict()) == names  # the fixed wavelet bank is no variable
        assert sum(p.numel() for p in net.parameters()) == net.n_parameters()
    elif backend_name == "jax":
        import jax
        from flax import nnx

        assert isinstance(net, nnx.Module) and isinstance(net, GCNN)
        assert len(jax.tree_util.tree_leaves(nnx.state(net, nnx.Param))) == 6  # the wavelet bank is no variable
        assert len(jax.tree_util.tree_leaves(nnx.state(net, nnx.BatchStat))) == 5  # the normalisation constants
    elif backend_name == "tensorflow":
        import tensorflow as tf

        assert isinstance(net, tf.Module) and isinstance(net, GCNN)
        assert len(net.trainable_variables) == 6
        assert len(net.variables) == 6 + 5  # and the normalisation constants


def test_far_fewer_parameters_than_a_cnn_of_the_same_widths():
    chanlist = [1, 16, 32, 16, 1]
    gcnn = GCNN(chanlist=chanlist, in_nside=NSIDE, backend="numpy")
    cnn = CNN(NSIDE, chanlist[0], chanlist[1:], backend="numpy")
    assert gcnn.n_parameters() < 0.6 * cnn.n_parameters()
    assert GCNN(chanlist=chanlist, in_nside=NSIDE, KERNELSZ=5, backend="numpy").n_parameters() == gcnn.n_parameters()
    assert gcnn.n_parameters() < 0.25 * CNN(NSIDE, 1, chanlist[1:], KERNELSZ=5, backend="numpy").n_parameters()


@BOTH
@pytest.mark.parametrize("pooled", [False, True])
def test_torch_to_tensorflow_file_same_outputs_and_gradients(pooled, tmp_path):
    import tensorflow as tf
    import torch

    ids = disc_ids()
    rng = np.random.default_rng(4)
    net_t = make("torch", ids, global_pool=pooled, n_scales=2, seed=11)
    with torch.no_grad():  # move the weights away from their initial values
        for p in net_t.parameters():
            p.add_(torch.as_tensor(rng.normal(0, 0.1, size=tuple(p.shape)), dtype=p.dtype))
    path = tmp_path / "gcnn.npz"
    net_t.save(path)
    net_f = GCNN.load(path, backend="tensorflow")
    assert isinstance(net_f, tf.Module) and net_f.global_pool == pooled and net_f.transform.n_scales == 2
    x = rng.normal(size=(3, 2, len(ids))).astype(np.float32)
    target = rng.normal(size=out_shape(3, ids, pooled)).astype(np.float32)
    pred_t = net_t.predict(x, batch_size=2)
    assert pred_t.shape == out_shape(3, ids, pooled)
    np.testing.assert_allclose(net_f.predict(x), pred_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(GCNN.load(path, backend="numpy").predict(x), pred_t, rtol=1e-5, atol=1e-5)

    loss_t = ((net_t(torch.as_tensor(x)) - torch.as_tensor(target)) ** 2).mean()
    loss_t.backward()
    with tf.GradientTape() as tape:
        loss_f = tf.reduce_mean((net_f(tf.constant(x)) - tf.constant(target)) ** 2)
    grads_f = tape.gradient(loss_f, net_f.parameters())
    assert abs(float(loss_t.detach()) - float(loss_f)) <= 1e-5 * abs(float(loss_t.detach()))
    assert len(grads_f) == len(list(net_t.parameters()))
    scale = max(float(np.max(np.abs(p.grad.numpy()))) for p in net_t.parameters())
    assert scale > 0
    for (name, _), p_t, g_f in zip(net_t.named_variables(), net_t.parameters(), grads_f):
        assert np.max(np.abs(p_t.grad.numpy() - g_f.numpy())) <= 1e-4 * scale, name


def std_task(n, seed):
    """Per-map regression: white noise of a random standard deviation, target that deviation."""
    r = np.random.default_rng(seed)
    s = r.uniform(0.5, 2.0, size=n)
    x = r.normal(size=(n, 1, NPIX)) * s[:, None, None]
    return x.astype(np.float32), s[:, None].astype(np.float32)


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_fit_learns_a_global_scalar(backend_name):
    x, y = std_task(24, 0)
    xv, yv = std_task(8, 1)
    net = GCNN(nparam=1, chanlist=[1, 6, 6], in_nside=NSIDE, global_pool=True, backend=backend_name, seed=1)
    before = float(np.mean((net.predict(xv) - yv) ** 2))
    history = net.fit(x, y, x_val=xv, y_val=yv, n_epoch=8, batch_size=8, lr=1e-2, verbose=False)
    assert len(history["val_loss"]) == 8
    assert history["val_loss"][-1] < 0.1 * before, (before, history["val_loss"])
    pred = net.predict(xv, batch_size=3)
    assert isinstance(pred, np.ndarray) and pred.shape == yv.shape
    assert np.mean((pred - yv) ** 2) == pytest.approx(history["val_loss"][-1], rel=1e-3)
    assert net.predict(xv[:0]).shape == (0, 1)


def test_fit_per_cell_and_per_map_classes():
    name = AUTOGRAD_BACKENDS[0]
    x, s = std_task(16, 2)
    # Per cell: the local energy of the map (needs no pooling).
    net = GCNN(nparam=1, chanlist=[1, 6], in_nside=NSIDE, backend=name, seed=2)
    target = np.abs(x)
    history = net.fit(x, target, n_epoch=6, batch_size=8, lr=1e-2, verbose=False)
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    # Per map: integer class labels (low / high deviation) with a softmax head.
    labels = (s[:, 0] > 1.25).astype(np.int64)
    clf = GCNN(nparam=2, chanlist=[1, 6], in_nside=NSIDE, global_pool=True, task="segmentation", backend=name)
    assert clf.final_activation == "softmax"
    history = clf.fit(x, labels, n_epoch=10, batch_size=8, lr=1e-1, verbose=False)
    assert history["train_loss"][-1] < 0.6 * history["train_loss"][0]
    prob = clf.predict(x)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(prob.argmax(axis=1) == labels) > 0.8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(chanlist=[4]), "chanlist"),
        (dict(chanlist=[]), "chanlist"),
        (dict(chanlist=[1, 0]), "chanlist"),
        (dict(nparam=0), "nparam"),
        (dict(KERNELSZ=4), "KERNELSZ"),
        (dict(KERNELSZ=-3), "KERNELSZ"),
        (dict(NORIENT=0), "NORIENT"),
        (dict(LAMBDA=-1.0), "LAMBDA"),
        (dict(features="phase"), "features"),
        (dict(n_scales=0), "n_scales"),
        (dict(n_scales=5), "n_scales"),
        (dict(global_pool="yes"), "global_pool"),
        (dict(task="classify"), "task"),
        (dict(in_nside=6), "nside"),
        (dict(cell_ids=[0, 1, NPIX]), "cell_ids"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = dict(chanlist=[1, 4], in_nside=NSIDE, backend="numpy")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GCNN(**args)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_forward_input_errors(backend_name):
    ids = disc_ids()
    net = make(backend_name, ids, global_pool=True)
    n = len(ids)
    with pytest.raises(ValueError, match="channels"):
        net(np.zeros((1, 3, n), np.float32))
    with pytest.raises(ValueError, match="cells"):
        net(np.zeros((1, 2, n + 1), np.float32))
    with pytest.raises(ValueError, match="shape"):
        net(np.zeros((2, n), np.float32))
    with pytest.raises(ValueError, match="x"):
        net.predict(np.zeros((1, 1, n)))


def test_fit_target_shape_errors():
    net = GCNN(chanlist=[1, 4], in_nside=NSIDE, global_pool=True, nparam=2, backend=AUTOGRAD_BACKENDS[0])
    x = np.zeros((4, 1, NPIX))
    with pytest.raises(ValueError, match=r"y_train must have shape \(N, 2\)"):
        net.fit(x, np.zeros((4, 2, NPIX)), n_epoch=1, verbose=False)
    with pytest.raises(ValueError, match="y_train has 3 samples"):
        net.fit(x, np.zeros((3, 2)), n_epoch=1, verbose=False)
    per_cell = GCNN(chanlist=[1, 4], in_nside=NSIDE, nparam=2, backend=AUTOGRAD_BACKENDS[0])
    with pytest.raises(ValueError, match="y_train"):
        per_cell.fit(x, np.zeros((4, 2)), n_epoch=1, verbose=False)


def test_pooled_scalar_targets_may_be_one_dimensional():
    """With nparam=1, one value per map can be given as (N,) as well as (N, 1)."""
    x = np.random.default_rng(0).normal(size=(4, 1, 12 * NSIDE**2)).astype(np.float32)
    net = GCNN(nparam=1, chanlist=[1, 4], in_nside=NSIDE, global_pool=True, backend=AUTOGRAD_BACKENDS[0])
    history = net.fit(x, np.array([0.1, 0.2, 0.3, 0.4]), n_epoch=2, batch_size=2, verbose=False)
    assert len(history["train_loss"]) == 2
