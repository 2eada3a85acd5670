"""Missing values in networks: NaN-aware default losses, ``mask_missing`` inputs, and the
normalisation stored with a model."""

import numpy as np
import pytest
from conftest import AUTOGRAD_BACKENDS, BACKENDS, to_numpy

from foscat_core.backends import get_backend
from foscat_core.nn import CNN, GCNN, HealpixUNet, HealpixViT, losses

NSIDE = 4
NPIX = 12 * NSIDE**2


def make(kind, backend, n_chan_in=2, **kw):
    kw.setdefault("seed", 3)
    if kind == "unet":
        return HealpixUNet(NSIDE, n_chan_in, [3, 4], backend=backend, **kw)
    if kind == "cnn":
        return CNN(NSIDE, n_chan_in, [4], backend=backend, **kw)
    if kind == "gcnn":
        return GCNN(nparam=kw.pop("out_channels", 1), chanlist=[n_chan_in, 4], in_nside=NSIDE, backend=backend, **kw)
    return HealpixViT(NSIDE, n_chan_in, token_nside=1, embed_dim=8, depth=1, num_heads=2, backend=backend, **kw)


def with_gaps(shape, seed=0, fraction=0.2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    x[rng.random(shape) < fraction] = np.nan
    return x


# --- losses -------------------------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _masked_mean(per_cell, labelled, weight):
    w = np.broadcast_to(weight, per_cell.shape) * labelled
    return (per_cell * w).sum() / w.sum()


def loss_case(name, rng):
    """(loss factory, prediction, target with NaN, hand-computed per-cell loss, labelled mask)."""
    shape = (3, 2, 10)
    target = rng.random(shape)
    target[rng.random(shape) < 0.3] = np.nan
    labelled = ~np.isnan(target)
    t = np.where(labelled, target, 0.0)
    z = rng.normal(size=shape)
    if name == "mse":
        return losses.mse, z, target, (z - t) ** 2, labelled
    if name in ("bce", "bce_logits"):
        p = _sigmoid(z)
        per_cell = -(t * np.log(p) + (1 - t) * np.log(1 - p))
        return ((lambda bk: losses.binary_cross_entropy(bk, name == "bce_logits")),
                z if name == "bce_logits" else p, target, per_cell, labelled)
    # Categorical: one-hot targets; a cell with any NaN channel is unlabelled.
    onehot = np.eye(2)[rng.integers(0, 2, size=(3, 10))].transpose(0, 2, 1)
    cell_labelled = rng.random((3, 1, 10)) > 0.3
    target = np.where(cell_labelled, onehot, np.nan)
    target[0, 0, 0] = np.nan  # one channel missing is enough
    cell_labelled[0, 0, 0] = False
    p = _softmax(z)
    per_cell = -(np.where(cell_labelled, onehot, 0.0) * np.log(p)).sum(axis=1, keepdims=True)
    return ((lambda bk: losses.cross_entropy(bk, name == "ce_logits")),
            z if name == "ce_logits" else p, target, per_cell, cell_labelled)


LOSSES = ["mse", "bce", "bce_logits", "ce", "ce_logits"]


@pytest.mark.parametrize("name", LOSSES)
def test_default_losses_average_over_labelled_cells_with_weights(name, backend_name):
    rng = np.random.default_rng(LOSSES.index(name))
    factory, pred, target, per_cell, labelled = loss_case(name, rng)
    bk = get_backend(backend_name)
    loss = factory(bk)
    weight = rng.random((3, 1, 1)) + 0.5  # per-sample weights
    # The probability losses add an epsilon inside the log: 1e-6 covers it.
    for w in (None, weight):
        got = float(to_numpy(loss(bk.asarray(pred, "float64"), bk.asarray(target, "float64"),
                                  None if w is None else bk.asarray(w, "float64"))))
        expected = _masked_mean(per_cell, labelled, 1.0 if w is None else w)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    nothing = np.full_like(target, np.nan)
    assert float(to_numpy(loss(bk.asarray(pred, "float64"), bk.asarray(nothing, "float64")))) == 0.0


@pytest.mark.parametrize("name", LOSSES)
def test_default_losses_give_finite_gradients_zero_on_unlabelled_cells(name, autograd_backend):
    rng = np.random.default_rng(10 + LOSSES.index(name))
    factory, pred, target, _, labelled = loss_case(name, rng)
    bk = get_backend(autograd_backend)
    loss = factory(bk)
    grads = []
    for tgt in (target, np.full_like(target, np.nan)):
        _, grad = bk.value_and_grad(lambda p, tgt=tgt: loss(p, bk.asarray(tgt, "float64")), bk.asarray(pred, "float64"))
        grads.append(to_numpy(grad))
    assert np.all(np.isfinite(grads[0])) and np.all(np.isfinite(grads[1]))
    unlabelled = np.broadcast_to(~labelled, pred.shape)
    if name in ("mse", "bce_logits", "ce_logits"):  # a probability's gradient also moves the other classes
        assert np.all(grads[0][unlabelled] == 0) and np.any(grads[0][~unlabelled] != 0)
    assert np.all(grads[1] == 0)  # nothing labelled: no contribution at all


def test_network_default_loss_ignores_nan_targets():
    net = make("cnn", "numpy", out_channels=1)
    pred = np.ones((2, 1, NPIX))
    target = np.full((2, 1, NPIX), np.nan)
    target[0, 0, :4] = 3.0
    assert float(net.default_loss()(pred, target)) == pytest.approx(4.0)
    assert float(net.default_loss()(pred, target, np.array([[[0.0]], [[1.0]]]))) == 0.0  # weight 0 on the labelled


def test_loss_weight_errors():
    bk = get_backend("numpy")
    pred = np.zeros((2, 3, 5))
    with pytest.raises(ValueError, match="weight must be broadcastable"):
        losses.mse(bk)(pred, pred, np.ones((1, 2, 3, 5)))
    with pytest.raises(ValueError, match="1 channel"):
        losses.cross_entropy(bk, False)(pred + 1 / 3, pred, np.ones((2, 3, 5)))


# --- mask_missing -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["unet", "cnn", "gcnn", "vit"])
def test_mask_missing_equals_filling_by_hand_and_agrees_across_backends(kind):
    """With ``mask_missing`` the network is the one of 2 C_in channels fed [x with NaN -> 0,
    validity]: same seed, same weights; outputs finite and equal on every backend."""
    x = with_gaps((2, 2, NPIX), seed=1)
    by_hand = np.concatenate([np.nan_to_num(x, nan=0.0), (~np.isnan(x)).astype(np.float32)], axis=1)
    reference = make(kind, "numpy", n_chan_in=4).eval()(by_hand)
    for backend in BACKENDS:
        net = make(kind, backend, mask_missing=True).eval()
        assert net.n_chan_in == 2 and net.first_layer_channels == 4 and net.config["mask_missing"] is True
        y = to_numpy(net(x))
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_mask_missing_trains_on_gaps_without_touching_running_statistics_with_nan(backend_name):
    net = make("unet", backend_name, mask_missing=True)
    net.train()
    _ = net(with_gaps((3, 2, NPIX), seed=2))
    running = [to_numpy(v) for n, v in net.named_variables() if "running" in n]
    assert running and all(np.all(np.isfinite(r)) for r in running)
    assert any(np.any(r != 0) for r in running)  # they did move


@pytest.mark.parametrize("train_mode", [True, False])
def test_nan_input_without_mask_missing_is_refused_before_any_statistic_moves(backend_name, train_mode):
    net = make("unet", backend_name).train(train_mode)
    before = {n: to_numpy(v).copy() for n, v in net.named_variables()}
    x = np.zeros((2, 2, NPIX), np.float32)
    x[1, 0, 7] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN.*mask_missing=True"):
        net(x)
    x[1, 0, 7] = np.inf
    with pytest.raises(ValueError, match="mask_missing=True"):
        net(x)
    for n, v in net.named_variables():
        np.testing.assert_array_equal(to_numpy(v), before[n], err_msg=n)


def test_infinite_input_is_refused_even_with_mask_missing():
    x = np.zeros((1, 2, NPIX), np.float32)
    x[0, 1, 0] = -np.inf
    with pytest.raises(ValueError, match="infinite"):
        make("cnn", "numpy", mask_missing=True)(x)


@pytest.mark.skipif("tensorflow" not in BACKENDS, reason="needs tensorflow")
def test_tf_function_masks_gaps_and_refuses_nan_inside_the_graph():
    import tensorflow as tf

    x = tf.constant(with_gaps((2, 2, NPIX), seed=3))
    masked = make("cnn", "tensorflow", mask_missing=True).eval()
    np.testing.assert_allclose(tf.function(masked)(x).numpy(), masked(x).numpy(), rtol=1e-6, atol=1e-6)
    plain = make("cnn", "tensorflow").eval()
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask_missing=True"):
        tf.function(plain)(x)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_torch_compile_masks_gaps_like_eager():
    import torch

    net = make("cnn", "torch", mask_missing=True).eval()
    x = torch.as_tensor(with_gaps((2, 2, NPIX), seed=4))
    compiled = torch.compile(net, backend="aot_eager")
    np.testing.assert_allclose(compiled(x).detach().numpy(), net(x).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_mask_missing_is_saved_with_the_model(tmp_path):
    net = make("vit", BACKENDS[-1], mask_missing=True)
    net.save(tmp_path / "vit.npz")
    loaded = HealpixViT.load(tmp_path / "vit.npz", backend="numpy")
    assert loaded.mask_missing is True and loaded.n_chan_in == 2
    x = with_gaps((2, 2, NPIX), seed=9)
    np.testing.assert_allclose(loaded.eval()(x), to_numpy(net.eval()(x)), rtol=1e-5, atol=1e-5)


def test_mask_missing_must_be_a_bool():
    with pytest.raises(TypeError, match="mask_missing must be True or False"):
        make("cnn", "numpy", mask_missing="yes")


# --- normalisation ------------------------------------------------------------------------------
X_MEAN, X_STD = np.array([1.0, -2.0]), np.array([2.0, 0.5])
Y_MEAN, Y_STD = np.array([10.0, 20.0]), np.array([3.0, 4.0])


@pytest.mark.parametrize("kind", ["unet", "gcnn"])
def test_normalisation_standardises_inputs_and_returns_user_units(kind, backend_name):
    x = np.random.default_rng(5).normal(size=(2, 2, NPIX)).astype(np.float32)
    plain = make(kind, backend_name, out_channels=2).eval()
    net = make(kind, backend_name, out_channels=2).eval()
    assert net.normalization is None
    net.set_normalization(X_MEAN, X_STD, Y_MEAN, Y_STD)
    expected = to_numpy(plain(((x - X_MEAN[:, None]) / X_STD[:, None]).astype(np.float32)))
    expected = expected * Y_STD[:, None] + Y_MEAN[:, None]
    np.testing.assert_allclose(to_numpy(net(x)), expected, rtol=1e-5, atol=1e-4)
    stored = net.normalization
    for key, value in (("x_mean", X_MEAN), ("x_std", X_STD), ("y_mean", Y_MEAN), ("y_std", Y_STD)):
        np.testing.assert_allclose(stored[key], value)
    y = np.array([[[13.0, np.nan], [16.0, 24.0]]], np.float32)
    got = to_numpy(net.normalize_target(y))
    np.testing.assert_allclose(got, [[[1.0, np.nan], [-1.0, 1.0]]])
    np.testing.assert_allclose(to_numpy(plain.normalize_target(y)), y)  # identity without normalisation


def test_normalised_nan_inputs_go_to_the_mask():
    """Standardisation comes first, NaN stays NaN and mask_missing sees it."""
    x = with_gaps((1, 2, NPIX), seed=6)
    net = make("cnn", "numpy", mask_missing=True)
    net.set_normalization(X_MEAN, X_STD)
    twin = make("cnn", "numpy", mask_missing=True)
    np.testing.assert_allclose(net(x), twin(((x - X_MEAN[:, None]) / X_STD[:, None]).astype(np.float32)),
                               rtol=1e-5, atol=1e-5)
    assert net.normalization["y_mean"] is None


def test_pooled_gcnn_outputs_are_denormalised_per_map():
    net = make("gcnn", "numpy", out_channels=2, global_pool=True)
    plain = make("gcnn", "numpy", out_channels=2, global_pool=True)
    net.set_normalization(y_mean=Y_MEAN, y_std=Y_STD)
    x = np.random.default_rng(7).normal(size=(3, 2, NPIX)).astype(np.float32)
    np.testing.assert_allclose(net(x), plain(x) * Y_STD + Y_MEAN, rtol=1e-5)
    assert net.normalization["x_mean"] is None


def test_normalisation_is_saved_with_the_model(tmp_path):
    net = make("cnn", AUTOGRAD_BACKENDS[0] if AUTOGRAD_BACKENDS else "numpy", out_channels=2)
    net.set_normalization(X_MEAN, X_STD, Y_MEAN, Y_STD)
    net.save(tmp_path / "net.npz")
    loaded = CNN.load(tmp_path / "net.npz", backend="numpy")
    for key in ("x_mean", "x_std", "y_mean", "y_std"):
        np.testing.assert_allclose(loaded.normalization[key], net.normalization[key])
    x = np.random.default_rng(8).normal(size=(2, 2, NPIX)).astype(np.float32)
    np.testing.assert_allclose(loaded.eval()(x), to_numpy(net.eval()(x)), rtol=1e-5, atol=1e-4)
    make("cnn", "numpy").save(tmp_path / "plain.npz")
    assert CNN.load(tmp_path / "plain.npz", backend="numpy").normalization is None


def test_set_normalization_validates_its_arguments():
    net = make("cnn", "numpy", out_channels=2)
    with pytest.raises(ValueError, match=r"x_mean must have shape \(2,\)"):
        net.set_normalization([1.0], [1.0])
    with pytest.raises(ValueError, match="x_std must be > 0"):
        net.set_normalization(X_MEAN, [1.0, 0.0])
    with pytest.raises(ValueError, match="y_mean must be finite"):
        net.set_normalization(X_MEAN, X_STD, [np.nan, 0.0], Y_STD)
    with pytest.raises(ValueError, match="given together"):
        net.set_normalization(X_MEAN)
    seg = make("cnn", "numpy", out_channels=2, task="segmentation")
    with pytest.raises(ValueError, match="task is 'segmentation'"):
        seg.set_normalization(X_MEAN, X_STD, Y_MEAN, Y_STD)
    assert net.normalization is None  # nothing stored by a refused call
    net.set_normalization(X_MEAN, X_STD)
    net.set_normalization()
    assert net.normalization is None
