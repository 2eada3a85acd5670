"""fit / predict sources: iterables of batches (DataLoader, tf.data), DataArrays read batch by
batch (dask), cells reordered or refused, DataArray out, thread-safe predict, argument checks."""

import threading

import healpy as hp
import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, BACKENDS
from foscat_core.nn import CNN, HealpixUNet

xr = pytest.importorskip("xarray")
da_mod = pytest.importorskip("dask.array")

NSIDE = 4
N_CELLS = 12 * NSIDE**2
ATTRS = {"grid_name": "healpix", "level": 2, "indexing_scheme": "nested"}


def data(n=8, seed=0, c_in=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, N_CELLS)).astype(np.float32)
    return x, (2.0 * x[:, :1] + 1.0).astype(np.float32)


def as_dataarray(values, cell_ids=None, chunks=None, dims=("time", "band", "cells")):
    ids = np.arange(values.shape[-1]) if cell_ids is None else cell_ids
    arr = values if chunks is None else da_mod.from_array(values, chunks=chunks)
    return xr.DataArray(arr, dims=dims, coords={"cell_ids": (dims[-1], ids, ATTRS), dims[0]: np.arange(len(values))})


def net(backend, **kw):
    return CNN(NSIDE, kw.pop("n_chan_in", 1), [4], backend=backend, seed=1, **kw)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_a_torch_dataloader_trains_as_the_same_batches_given_as_a_list():
    import torch

    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=3)
    batches = [(x[i:i + 3], y[i:i + 3]) for i in range(0, 8, 3)]
    a, b = net("torch"), net("torch")
    ha = a.fit(loader, n_epoch=3, lr=1e-2, verbose=False)
    hb = b.fit(batches, n_epoch=3, lr=1e-2, verbose=False)
    np.testing.assert_allclose(ha["train_loss"], hb["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(a.predict(x), b.predict(x), rtol=1e-6)
    assert ha["train_loss"][-1] < ha["train_loss"][0]


@pytest.mark.skipif("tensorflow" not in BACKENDS, reason="needs tensorflow")
def test_a_tf_dataset_trains_as_the_same_batches_given_as_a_generator_function():
    import tensorflow as tf

    x, y = data()
    xv, yv = data(4, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    def batches():
        for i in range(0, 8, 3):
            yield x[i:i + 3], y[i:i + 3]
    a, b = net("tensorflow"), net("tensorflow")
    ha = a.fit(dataset, x_val=tf.data.Dataset.from_tensor_slices((xv, yv)).batch(2), n_epoch=3, lr=1e-2, verbose=False)
    hb = b.fit(batches, x_val=xv, y_val=yv, n_epoch=3, lr=1e-2, verbose=False)
    np.testing.assert_allclose(ha["train_loss"], hb["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(ha["val_loss"], hb["val_loss"], rtol=1e-5)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_a_dask_dataarray_trains_and_predicts_like_the_numpy_array(backend):
    x, y = data(10, c_in=2)
    ids = np.random.default_rng(3).permutation(N_CELLS)  # the DataArray's cells in another order
    order = np.argsort(ids)  # the network keeps the NESTED order: values[..., order] are its cells
    xda = as_dataarray(x, ids, chunks=(2, 2, N_CELLS))
    yda = as_dataarray(y[:, 0], ids, chunks=(2, N_CELLS), dims=("time", "cells"))
    a, b = net(backend, n_chan_in=2), net(backend, n_chan_in=2)
    ha = a.fit(xda, yda, n_epoch=2, batch_size=4, lr=1e-2, verbose=False)
    hb = b.fit(x[..., order], y[..., order], n_epoch=2, batch_size=4, lr=1e-2, verbose=False)
    np.testing.assert_allclose(ha["train_loss"], hb["train_loss"], rtol=1e-5)
    out = a.predict(xda, batch_size=3)
    assert isinstance(out, xr.DataArray) and out.dims == ("time", "band", "cells")
    np.testing.assert_array_equal(out.cell_ids.values, ids)
    np.testing.assert_array_equal(out.time.values, xda.time.values)
    assert out.cell_ids.attrs == ATTRS and out.sizes["band"] == 1
    np.testing.assert_allclose(out.values[..., order], b.predict(x[..., order]), rtol=1e-5, atol=1e-6)


def test_a_dask_dataarray_is_read_batch_by_batch_never_whole():
    from dask.callbacks import Callback

    x, _ = data(12)
    xda = as_dataarray(x, chunks=(1, 1, N_CELLS))
    loaded = []

    class Count(Callback):
        def _start(self, dsk):
            loaded.append(sum(1 for k in dsk if isinstance(k, tuple) and "array" in str(k[0])))

    with Count():
        out = net(BACKENDS[0]).predict(xda, batch_size=4)
    assert out.shape == (12, 1, N_CELLS) and len(loaded) == 3, loaded
    assert max(loaded) <= 4, loaded  # each compute reads one batch's chunks


def test_predict_keep_missing_puts_nan_back_where_the_input_is_always_missing():
    x, _ = data(5, c_in=2)
    x[:, :, :10] = np.nan  # "land": every channel of every sample
    x[:, 0, 10:20] = np.nan  # one channel missing
    x[:3, :, 20:30] = np.nan  # "clouds": every channel, but only in some samples
    model = net(BACKENDS[0], n_chan_in=2, mask_missing=True)
    assert np.isfinite(model.predict(x)).all()
    kept = model.predict(as_dataarray(x, chunks=(2, 2, N_CELLS)), batch_size=2, keep_missing=True)
    assert np.isnan(kept.values[:, :, :10]).all() and np.isfinite(kept.values[:, :, 10:]).all()


def test_dataarray_cells_and_grid_must_be_the_networks():
    x, y = data(4)
    model = net(AUTOGRAD_BACKENDS[0])
    with pytest.raises(ValueError, match="x_train's 100 cells are not the network's 192"):
        model.fit(as_dataarray(x[..., :100]), y[..., :100], n_epoch=1, verbose=False)
    coarse = xr.DataArray(x[..., :48], dims=("time", "band", "cells"),
                          coords={"cell_ids": ("cells", np.arange(48), dict(ATTRS, level=1))})
    with pytest.raises(ValueError, match="nside 2"):
        model.predict(coarse)
    with pytest.raises(ValueError, match="cell_ids"):
        model.predict(xr.DataArray(x, dims=("time", "band", "cells")))


def test_regional_dataarray_without_channel_dim():
    ids = hp.query_disc(NSIDE, hp.ang2vec(np.pi / 2, 0.0), np.radians(40), nest=True)
    model = HealpixUNet(NSIDE, 1, [2, 4], cell_ids=ids, backend=BACKENDS[0], seed=0)
    values = np.random.default_rng(0).normal(size=(3, len(ids))).astype(np.float32)
    xda = xr.DataArray(values, dims=("time", "cells"), coords={"cell_ids": ("cells", ids, ATTRS)})
    out = model.predict(xda)
    assert out.dims == ("time", "cells")
    np.testing.assert_allclose(out.values, model.predict(values[:, None])[:, 0], rtol=1e-6)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_batch_sources_are_checked(backend):
    x, y = data(6)
    model = net(backend)
    with pytest.raises(ValueError, match=r"x_train batch 1 \(x\) must have shape \(N, 1, 192\)"):
        model.fit([(x[:3], y[:3]), (x[3:, :, :100], y[3:])], n_epoch=1, verbose=False)
    with pytest.raises(ValueError, match=r"x_train batch 0 \(y\) has 2 samples"):
        model.fit([(x[:3], y[:2])], n_epoch=1, verbose=False)
    with pytest.raises(ValueError, match="x_train batch 0 must be a pair"):
        model.fit([x[:3]], n_epoch=1, verbose=False)
    generator = ((x[i:i + 2], y[i:i + 2]) for i in range(0, 6, 2))
    with pytest.raises(ValueError, match="one-shot iterator"):
        model.fit(generator, n_epoch=2, verbose=False)
    assert len(model.fit(generator, n_epoch=1, verbose=False)["train_loss"]) == 1  # one epoch is fine
    with pytest.raises(ValueError, match="x_val batch 0"):
        model.fit(x, y, x_val=[(x[:2], y[:2, :, :5])], n_epoch=1, verbose=False)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_hyperparameters_and_losses_are_checked_on_every_backend(backend):
    x, y = data(4)
    model = net(backend)
    for kwargs, error, match in [
        (dict(lr="abc"), TypeError, "lr"), (dict(lr=float("nan")), ValueError, "lr"), (dict(lr=-1e-3), ValueError, "lr"),
        (dict(weight_decay=-1.0), ValueError, "weight_decay"), (dict(optimizer="rmsprop"), ValueError, "optimizer"),
        (dict(momentum=1.0), ValueError, "momentum"), (dict(lr_schedule="linear"), ValueError, "lr_schedule"),
        (dict(patience=0), ValueError, "patience"), (dict(normalize="yes"), ValueError, "normalize"),
        (dict(loss_fn=lambda p, t: (p - t) ** 2), ValueError, "loss_fn must return a scalar"),
        (dict(loss_fn=lambda p, t: 1.0), TypeError, "loss_fn must return a scalar tensor"),
        (dict(sample_weight=np.ones(4), loss_fn=lambda p, t: ((p - t) ** 2).mean()), ValueError, "third argument"),
        (dict(sample_weight=np.ones(3)), ValueError, "sample_weight"),
        (dict(sample_weight=-np.ones(4)), ValueError, "sample_weight"),
        (dict(resume=True), ValueError, "checkpoint"),
    ]:
        with pytest.raises(error, match=match):
            model.fit(x, y, n_epoch=1, verbose=False, **kwargs)


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_binary_segmentation_targets_must_be_in_zero_one(backend):
    x, _ = data(4)
    model = CNN(NSIDE, 1, [4], task="segmentation", backend=backend)
    with pytest.raises(ValueError, match=r"y_train: .*\[0, 1\]"):
        model.fit(x, np.random.default_rng(0).integers(0, 5, (4, N_CELLS)), n_epoch=1, verbose=False)
    with pytest.raises(ValueError, match=r"y_train: .*\[0, 1\]"):
        model.fit(x, np.full((4, 1, N_CELLS), -3.0), n_epoch=1, verbose=False)
    labels = (x > 0).astype(np.float32)
    labels[:, :, :20] = np.nan  # unlabelled cells are fine
    assert np.isfinite(model.fit(x, labels, n_epoch=1, verbose=False)["train_loss"][0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_from_threads_gives_the_same_answers_and_leaves_the_network_as_it_was(backend):
    x, _ = data(6, c_in=2)
    model = HealpixUNet(NSIDE, 2, [4, 4], backend=backend, seed=0)  # batch norm: running statistics
    model.set_normalization([0.5, -1.0], [2.0, 3.0], [1.0], [4.0])
    expected = model.predict(x, batch_size=2)
    states = {k: np.array(model.backend.to_numpy(v)) for k, v in model.named_variables()}
    results, errors = [], []

    def worker():
        try:
            for _ in range(3):
                results.append(model.predict(x, batch_size=2))
        except Exception as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 12
    for out in results:
        np.testing.assert_array_equal(out, expected)
    assert model.training
    for name, value in model.named_variables():
        np.testing.assert_array_equal(model.backend.to_numpy(value), states[name], err_msg=name)
