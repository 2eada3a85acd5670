"""fit / predict: training lowers the loss on every backend that trains; neighbours matter."""

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from conftest import AUTOGRAD_BACKENDS, BACKENDS
from foscat_core.nn import CNN, HealpixUNet

NSIDE = 8


def smoothing_task(n_samples, seed, cell_ids=None):
    """Inputs: white noise; targets: its 3x3-stencil average, a task that needs neighbours."""
    n = 12 * NSIDE**2 if cell_ids is None else len(cell_ids)
    x = np.random.default_rng(seed).normal(size=(n_samples, 1, n))
    st = fc.SphericalStencil(NSIDE, 3, cell_ids=cell_ids, backend="numpy", dtype="float64")
    y = st.conv(x, np.full((1, 1, 9), 1.0 / 9.0))
    return x.astype(np.float32), (3.0 * y).astype(np.float32)


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_unet_fit_lowers_the_validation_loss_on_a_regional_domain(backend_name):
    ids = hp.query_disc(NSIDE, hp.ang2vec(np.pi / 2, 0.0), np.radians(45), nest=True)
    x, y = smoothing_task(24, 0, ids)
    xv, yv = smoothing_task(8, 1, ids)
    net = HealpixUNet(NSIDE, 1, [8, 8], cell_ids=ids, backend=backend_name, seed=1)
    history = net.fit(x, y, x_val=xv, y_val=yv, n_epoch=25, batch_size=8, lr=1e-2, verbose=False)
    assert len(history["train_loss"]) == len(history["val_loss"]) == 25
    assert history["val_loss"][-1] < 0.3 * history["val_loss"][0], history["val_loss"]
    pred = net.predict(xv, batch_size=3)
    assert isinstance(pred, np.ndarray) and pred.shape == yv.shape
    assert np.mean((pred - yv) ** 2) == pytest.approx(history["val_loss"][-1], rel=1e-3)


def test_spherical_convolutions_beat_a_one_by_one_baseline():
    name = AUTOGRAD_BACKENDS[0]
    x, y = smoothing_task(24, 0)
    xv, yv = smoothing_task(8, 1)
    final = {}
    for k in (3, 1):
        net = CNN(NSIDE, 1, [8, 8], KERNELSZ=k, backend=name, seed=2)
        final[k] = net.fit(x, y, x_val=xv, y_val=yv, n_epoch=30, batch_size=8, lr=1e-2, verbose=False)["val_loss"][-1]
    assert final[3] < 0.5 * final[1], final


@pytest.mark.skipif(not {"torch", "tensorflow"} <= set(BACKENDS), reason="needs torch and tensorflow")
def test_torch_and_tensorflow_train_to_the_same_weights():
    """Same seed, data and optimiser (Adam with L2 decay): the same losses epoch by epoch."""
    x, y = smoothing_task(8, 3)
    losses = {}
    for name in ("torch", "tensorflow"):
        net = CNN(NSIDE, 1, [4], backend=name, seed=5, dtype="float64")
        losses[name] = net.fit(x, y, n_epoch=4, batch_size=4, lr=1e-2, weight_decay=1e-3, verbose=False)["train_loss"]
    np.testing.assert_allclose(losses["tensorflow"], losses["torch"], rtol=1e-8)


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_segmentation_defaults_and_integer_labels(backend_name):
    x, y = smoothing_task(16, 4)
    labels = (y[:, 0] > 0).astype(np.int64) + (y[:, 0] > 1).astype(np.int64)  # 3 classes
    net = CNN(NSIDE, 1, [8, 8], out_channels=3, task="segmentation", backend=backend_name, seed=3)
    assert net.final_activation == "softmax"
    history = net.fit(x, labels, n_epoch=15, batch_size=8, lr=1e-2, verbose=False)
    assert history["train_loss"][-1] < 0.7 * history["train_loss"][0]
    prob = net.predict(x)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = np.mean(prob.argmax(axis=1) == labels)
    assert accuracy > 0.6
    binary = CNN(NSIDE, 1, [4], task="segmentation", backend=backend_name)
    assert binary.final_activation == "sigmoid"
    out = binary.predict(x[:2])
    assert out.min() >= 0 and out.max() <= 1


def test_numpy_networks_predict_but_cannot_train():
    x, y = smoothing_task(2, 0)
    net = CNN(NSIDE, 1, [4], backend="numpy")
    assert net.predict(x).shape == (2, 1, 12 * NSIDE**2)
    with pytest.raises(NotImplementedError, match="torch"):
        net.fit(x, y, n_epoch=1, verbose=False)


@pytest.mark.parametrize(
    "args, match",
    [
        (dict(x_train=np.zeros((4, 2, 768))), "x_train"),
        (dict(x_train=np.zeros((4, 1, 700))), "x_train"),
        (dict(y_train=np.zeros((3, 1, 768))), "y_train"),
        (dict(y_train=np.zeros((4, 2, 768))), "y_train"),
        (dict(x_val=np.zeros((2, 1, 768))), "x_val and y_val"),
        (dict(x_train=np.full((4, 1, 768), np.nan)), "x_train"),
        (dict(n_epoch=0), "n_epoch"),
        (dict(batch_size=-1), "batch_size"),
    ],
)
def test_fit_input_errors(args, match):
    kwargs = dict(x_train=np.zeros((4, 1, 768)), y_train=np.zeros((4, 1, 768)), verbose=False)
    kwargs.update(args)
    net = CNN(NSIDE, 1, [4], backend=AUTOGRAD_BACKENDS[0])
    with pytest.raises(ValueError, match=match):
        net.fit(**kwargs)


def test_segmentation_labels_out_of_range():
    net = CNN(NSIDE, 1, [4], out_channels=3, task="segmentation", backend=AUTOGRAD_BACKENDS[0])
    with pytest.raises(ValueError, match="y_train"):
        net.fit(np.zeros((2, 1, 768)), np.full((2, 768), 3), n_epoch=1, verbose=False)


@pytest.mark.parametrize("form", ["bool", "int_2d", "float_3d"])
def test_binary_segmentation_accepts_common_label_forms(form):
    x, y = smoothing_task(8, 5)
    mask = y[:, 0] > 0
    labels = {"bool": mask, "int_2d": mask.astype(np.int64), "float_3d": mask[:, None].astype(np.float32)}[form]
    net = CNN(NSIDE, 1, [4], task="segmentation", backend=AUTOGRAD_BACKENDS[0], seed=1)
    history = net.fit(x, labels, n_epoch=3, batch_size=4, lr=1e-2, verbose=False)
    assert np.all(np.isfinite(history["train_loss"]))


def test_fit_on_no_samples_is_a_clear_error():
    net = CNN(NSIDE, 1, [4], backend=AUTOGRAD_BACKENDS[0])
    with pytest.raises(ValueError, match="x_train"):
        net.fit(np.zeros((0, 1, 768)), np.zeros((0, 1, 768)), n_epoch=1, verbose=False)
