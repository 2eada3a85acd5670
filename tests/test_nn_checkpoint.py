"""Optimisers (torch and TF step for step), their persistence across fit calls, schedules, early
stopping, and checkpoints: 2 epochs + resume 2 epochs == 4 uninterrupted epochs."""

import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, BACKENDS
from foscat_core.nn import CNN, HealpixUNet
from foscat_core.nn.optimizers import cosine_schedule, step_schedule

NSIDE = 4
N_CELLS = 12 * NSIDE**2


def data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, N_CELLS))
    return x, 1.5 * x[:, :1] - x[:, 1:] + 3.0


def weights(net):
    return {k: np.array(net.backend.to_numpy(v)) for k, v in net.named_variables()}


def assert_same_weights(a, b, rtol, atol=1e-12):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.skipif(not {"torch", "tensorflow"} <= set(BACKENDS), reason="needs torch and tensorflow")
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_torch_and_tensorflow_optimizers_follow_the_same_trajectory(optimizer):
    x, y = data()
    nets = {name: CNN(NSIDE, 2, [4], backend=name, seed=5, dtype="float64") for name in ("torch", "tensorflow")}
    hist = {name: net.fit(x, y, n_epoch=4, batch_size=3, lr=1e-2, weight_decay=1e-2, optimizer=optimizer,
                          momentum=0.8, lr_schedule="cosine", verbose=False)
            for name, net in nets.items()}
    np.testing.assert_allclose(hist["tensorflow"]["train_loss"], hist["torch"]["train_loss"], rtol=1e-8)
    # atol: biases ahead of a batch norm get no gradient and stay at round-off (~1e-9)
    assert_same_weights(nets["torch"], nets["tensorflow"], rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(hist["torch"]["lr"], [1e-2 * cosine_schedule(4)(e) for e in range(4)])


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_resuming_a_checkpoint_gives_the_uninterrupted_run(backend, tmp_path):
    x, y = data(10)
    xv, yv = data(4, seed=1)
    kwargs = dict(x_val=xv, y_val=yv, batch_size=4, lr=1e-2, normalize=True, lr_schedule=step_schedule(1, 0.5),
                  patience=5, verbose=False)

    def build():
        return HealpixUNet(NSIDE, 2, [4, 4], backend=backend, seed=3, dtype="float64")  # batch norm inside

    whole = build()
    h_whole = whole.fit(x, y, n_epoch=4, **kwargs)
    path = tmp_path / "run.ckpt.npz"
    first = build()
    first.fit(x, y, n_epoch=2, checkpoint=path, **kwargs)
    resumed = build()  # a fresh process: nothing but the file
    h_resumed = resumed.fit(x, y, n_epoch=4, checkpoint=path, resume=True, **kwargs)
    assert len(h_resumed["train_loss"]) == 4
    for key in ("train_loss", "val_loss", "lr"):
        np.testing.assert_allclose(h_resumed[key], h_whole[key], rtol=1e-10, err_msg=key)
    assert_same_weights(resumed, whole, rtol=1e-10, atol=1e-9)  # atol: biases ahead of batch norm are round-off
    assert resumed.normalization is not None
    np.testing.assert_allclose(resumed.normalization["x_mean"], x.mean(axis=(0, 2)), rtol=1e-10)
    np.testing.assert_allclose(resumed.normalization["y_std"], y.std(axis=(0, 2)), rtol=1e-10)


def test_resume_checks_the_file(tmp_path):
    x, y = data(4)
    net = CNN(NSIDE, 2, [4], backend=AUTOGRAD_BACKENDS[0])
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        net.fit(x, y, n_epoch=2, checkpoint=tmp_path / "none.npz", resume=True, verbose=False)
    path = tmp_path / "c.npz"
    net.fit(x, y, n_epoch=1, checkpoint=path, verbose=False)
    other = CNN(NSIDE, 2, [8], backend=AUTOGRAD_BACKENDS[0])
    with pytest.raises(ValueError, match="written by a CNN with config"):
        other.fit(x, y, n_epoch=2, checkpoint=path, resume=True, verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary left behind
    blob = path.read_bytes()
    for name, content in (("truncated.npz", blob[: len(blob) // 2]), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name} is .* foscat_core checkpoint"):
            net.fit(x, y, n_epoch=2, checkpoint=tmp_path / name, resume=True, verbose=False)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_a_second_fit_continues_the_optimiser(backend):
    x, y = data(6)

    def build():
        return CNN(NSIDE, 2, [4], backend=backend, seed=2, dtype="float64")

    once, twice, restarted = build(), build(), build()
    once.fit(x, y, n_epoch=4, batch_size=6, lr=1e-2, verbose=False)  # one batch: shuffling is moot
    for net, second in ((twice, "adam"), (restarted, "sgd")):
        net.fit(x, y, n_epoch=2, batch_size=6, lr=1e-2, verbose=False)
        net.fit(x, y, n_epoch=2, batch_size=6, lr=1e-2, optimizer=second, verbose=False)
    assert_same_weights(twice, once, rtol=1e-9, atol=1e-8)  # one batch, reshuffled: round-off only
    head = [k for k in weights(once) if k.endswith("weight")][-1]
    assert not np.allclose(weights(restarted)[head], weights(once)[head], rtol=1e-6)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_early_stopping_restores_the_best_weights(backend):
    x, y = data(8)
    xv, yv = data(4, seed=1)
    net = CNN(NSIDE, 2, [4], backend=backend, seed=0)
    # The rate explodes from the third epoch on: the validation loss gets worse and training stops.
    history = net.fit(x, y, x_val=xv, y_val=yv, n_epoch=20, batch_size=4, lr=1e-2, patience=2,
                      lr_schedule=lambda epoch: 1.0 if epoch < 2 else 300.0, verbose=False)
    assert len(history["val_loss"]) == 4 and history["best_epoch"] == 1, history
    pred = net.predict(xv)
    assert np.mean((pred - yv) ** 2) == pytest.approx(min(history["val_loss"]), rel=1e-4)
