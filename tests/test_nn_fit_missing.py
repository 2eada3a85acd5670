"""fit with real data: NaN targets left out, NaN inputs refused unless mask_missing, sample
weights, and normalisation constants computed in one streaming pass."""

import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS
from foscat_core.backends import get_backend
from foscat_core.nn import CNN
from foscat_core.nn.training_data import ChannelMoments

NSIDE = 4
N_CELLS = 12 * NSIDE**2


def data(n=8, seed=0, c_in=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=np.array([3.0, -1.0])[:c_in, None], scale=np.array([2.0, 0.5])[:c_in, None],
                   size=(n, c_in, N_CELLS))
    return x, 4.0 * x[:, :1] + 10.0


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_nan_targets_are_left_out_of_the_default_loss(backend):
    x, y = data()
    xv, yv = data(4, seed=1)
    y[:, :, ::3] = np.nan
    yv[:, :, 1::4] = np.nan
    yv[2] = np.nan  # a sample with nothing labelled
    net = CNN(NSIDE, 2, [4], backend=backend, seed=0, dtype="float64")
    history = net.fit(x, y, x_val=xv, y_val=yv, n_epoch=3, batch_size=4, lr=1e-2, verbose=False)
    assert np.all(np.isfinite(history["train_loss"]))
    pred = net.predict(xv)
    # One validation batch: its loss is the MSE over labelled cells, by hand.
    assert history["val_loss"][-1] == pytest.approx(np.nanmean((pred - yv) ** 2), rel=1e-9)
    assert history["train_loss"][-1] < history["train_loss"][0]
    xp = net.backend.xp

    def nan_fraction(pred, target):  # a custom loss gets the NaNs as they are
        return xp.mean(xp.astype(target != target, pred.dtype)) + 0.0 * xp.mean(pred)

    seen = net.fit(x, y, n_epoch=1, loss_fn=nan_fraction, batch_size=8, verbose=False)["train_loss"]
    assert seen[0] == pytest.approx(np.isnan(y).mean(), rel=1e-12)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_sample_weights_match_a_hand_written_weighted_loss(backend):
    x, y = data()
    w = np.linspace(0.0, 2.0, 8)
    cells = np.random.default_rng(0).uniform(size=(1, 1, N_CELLS))

    xp = get_backend(backend).xp

    def hand(pred, target, weight):
        return xp.sum(weight * (pred - target) ** 2) / xp.sum(weight * (target * 0 + 1))

    def train(**kwargs):
        net = CNN(NSIDE, 2, [4], backend=backend, seed=4, dtype="float64")
        history = net.fit(n_epoch=3, batch_size=8, lr=1e-2, verbose=False, **kwargs)
        return history["train_loss"], net.predict(x)

    default, pred = train(x_train=x, y_train=y, sample_weight=w)
    by_hand, pred_hand = train(x_train=x, y_train=y, sample_weight=w, loss_fn=hand)
    triples, pred_triples = train(x_train=[(x, y, w)])
    np.testing.assert_allclose(default, by_hand, rtol=1e-9)
    np.testing.assert_allclose(pred, pred_hand, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pred, pred_triples, rtol=1e-6, atol=1e-7)  # in-batch order: round-off
    per_cell, _ = train(x_train=x, y_train=y, sample_weight=w[:, None, None] * cells)  # (N, 1, N_cells)
    per_cell_hand, _ = train(x_train=x, y_train=y, sample_weight=w[:, None, None] * cells, loss_fn=hand)
    np.testing.assert_allclose(per_cell, per_cell_hand, rtol=1e-9)
    assert not np.allclose(per_cell, default)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_nan_inputs_need_mask_missing(backend):
    x, y = data(4)
    x[0, 1, :7] = np.nan
    plain = CNN(NSIDE, 2, [4], backend=backend)
    with pytest.raises(ValueError, match="x_train contains NaN.*mask_missing=True"):
        plain.fit(x, y, n_epoch=1, verbose=False)
    with pytest.raises(ValueError, match=r"x_train batch 1 \(x\) contains NaN"):
        plain.fit([(x[2:], y[2:]), (x[:2], y[:2])], n_epoch=1, verbose=False)
    with pytest.raises(ValueError, match="x contains NaN"):
        plain.predict(x)
    x[1, 1, :3] = np.inf
    masked = CNN(NSIDE, 2, [4], backend=backend, mask_missing=True)
    with pytest.raises(ValueError, match="x_train contains infinite"):
        masked.fit(x, y, n_epoch=1, verbose=False)
    x[1, 1, :3] = 0.0
    history = masked.fit(x, y, n_epoch=2, verbose=False, normalize=True)
    assert np.all(np.isfinite(history["train_loss"])) and np.isfinite(masked.predict(x)).all()


def test_normalize_computes_streaming_statistics_over_valid_cells_once():
    x, y = data(10)
    x[:3, 0, :50] = np.nan
    y[:, :, ::2] = np.nan
    net = CNN(NSIDE, 2, [4], backend=AUTOGRAD_BACKENDS[0], seed=0, mask_missing=True)
    batches = [(x[i:i + 3], y[i:i + 3]) for i in range(0, 10, 3)]  # uneven batches, merged
    net.fit(batches, n_epoch=1, normalize=True, verbose=False)
    norm = net.normalization
    np.testing.assert_allclose(norm["x_mean"], np.nanmean(x, axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(norm["x_std"], np.nanstd(x, axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(norm["y_mean"], np.nanmean(y, axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(norm["y_std"], np.nanstd(y, axis=(0, 2)), rtol=1e-6)
    net.fit(x + 100.0, y, n_epoch=1, normalize=True, verbose=False)  # already set: kept
    np.testing.assert_allclose(net.normalization["x_mean"], norm["x_mean"])
    net.fit(x + 100.0, y, n_epoch=1, normalize="recompute", verbose=False)
    np.testing.assert_allclose(net.normalization["x_mean"], np.nanmean(x, axis=(0, 2)) + 100.0, rtol=1e-6)


def test_channel_moments_are_stable_far_from_zero():
    values = 1e8 + np.random.default_rng(0).normal(size=(40, 1, 100))
    moments = ChannelMoments(1)
    for i in range(0, 40, 7):
        moments.update(values[i:i + 7])
    mean, std = moments.mean_std("x")
    np.testing.assert_allclose(mean, values.mean(), rtol=1e-14)
    np.testing.assert_allclose(std, values.std(), rtol=1e-8)
