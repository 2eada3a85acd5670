"""HealpixViT: shapes, input order, padded border tokens, cross-backend numbers, gradients,
training and portable weight files."""

import healpy as hp
import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS, BACKENDS, assert_close, to_numpy
from foscat_core.nn.vit import HealpixViT

NSIDE = 8
SMALL = dict(embed_dim=16, depth=2, num_heads=4, mlp_ratio=2.0)


def disc_ids(nside=NSIDE, radius=0.7, seed=3):
    """A regional disc in a shuffled order (its border tokens are incomplete)."""
    ids = hp.query_disc(nside, hp.ang2vec(1.1, 0.4), radius, nest=True).astype(np.int64)
    np.random.default_rng(seed).shuffle(ids)
    return ids


def maps(n, c, n_cells, seed=0):
    return np.random.default_rng(seed).normal(size=(n, c, n_cells)).astype("float32")


@pytest.mark.parametrize("regional", [False, True])
def test_forward_shape(backend_name, regional):
    ids = disc_ids() if regional else None
    n_cells = 12 * NSIDE**2 if ids is None else ids.size
    net = HealpixViT(NSIDE, 3, 2, cell_ids=ids, backend=backend_name, **SMALL)
    assert net.token_nside == 2 and net.children_per_token == 16
    y = to_numpy(net(maps(2, 3, n_cells)))
    assert y.shape == (2, 2, n_cells)
    assert np.all(np.isfinite(y))


def test_default_hyper_parameters():
    net = HealpixViT(16, 1, backend="numpy")
    assert (net.token_nside, net.embed_dim, net.depth, net.num_heads) == (4, 64, 2, 4)
    assert net.n_tokens == 12 * 16 and net.out_channels == 1


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("regional", [False, True])
def test_output_follows_input_order(backend, regional):
    ids = disc_ids() if regional else np.arange(12 * NSIDE**2)
    x = maps(2, 3, ids.size)
    perm = np.random.default_rng(7).permutation(ids.size)
    a = HealpixViT(NSIDE, 3, 2, cell_ids=ids, backend=backend, seed=5, **SMALL)
    b = HealpixViT(NSIDE, 3, 2, cell_ids=ids[perm], backend=backend, seed=5, **SMALL)
    assert not b.layout.identity
    ya, yb = a.predict(x), b.predict(x[:, :, perm])
    np.testing.assert_allclose(yb, ya[:, :, perm], rtol=1e-5, atol=1e-5)


def test_padded_slots_do_not_contribute():
    ids = disc_ids()
    net = HealpixViT(NSIDE, 2, 1, cell_ids=ids, backend="numpy", dtype="float64", **SMALL)
    lay = net.layout
    assert not lay.all_present and lay.present.any(axis=1).all()
    x = maps(2, 2, ids.size).astype("float64")
    s, c = lay.children, 2
    w = np.array(net.embed.weight).reshape(c, s, -1)  # rows: channel-major (c, slot)
    expected = np.zeros((2, lay.n_tokens, net.embed_dim))
    for t in range(lay.n_tokens):
        for slot in np.flatnonzero(lay.present[t]):
            pos = lay.gather[t * s + slot]
            assert ids[pos] == lay.token_ids[t] * s + slot
            expected[:, t] += x[:, :, pos] @ w[:, slot]
    expected += np.array(net.embed.bias)
    np.testing.assert_allclose(net.patch_embedding(x), expected, rtol=1e-12, atol=1e-12)

    # Padding is 0 although its gather index points at a real cell (position 0): the same as a
    # full-sky network (same seed, same weights) fed zeros outside the region.
    assert lay.gather[~lay.present.reshape(-1)].max() == 0 and np.any(x[:, :, 0] != 0)
    full = HealpixViT(NSIDE, 2, 1, backend="numpy", dtype="float64", **SMALL)
    x_full = np.zeros((2, 2, 12 * NSIDE**2))
    x_full[:, :, ids] = x
    np.testing.assert_allclose(net.patch_embedding(x), full.patch_embedding(x_full)[:, lay.token_ids],
                               rtol=1e-12, atol=1e-12)


def test_position_encoding_depends_on_position_only():
    ids = disc_ids()
    full = HealpixViT(NSIDE, 2, 1, backend="numpy", **SMALL)
    region = HealpixViT(NSIDE, 2, 1, cell_ids=ids, backend="numpy", **SMALL)
    np.testing.assert_allclose(region.position_encoding(), full.position_encoding()[region.token_ids], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_agree(dtype):
    ids = disc_ids()
    x = maps(3, 2, ids.size)
    ref = HealpixViT(NSIDE, 2, 3, cell_ids=ids, backend="numpy", dtype="float64", seed=11, **SMALL).predict(x)
    for name in BACKENDS:
        net = HealpixViT(NSIDE, 2, 3, cell_ids=ids, backend=name, dtype=dtype, seed=11, **SMALL)
        assert_close(net.predict(x), ref, dtype)


@pytest.mark.skipif(not {"torch", "tensorflow"} <= set(BACKENDS), reason="needs torch and tensorflow")
def test_torch_file_loads_in_tensorflow_and_numpy(tmp_path):
    ids = disc_ids()
    x, y = maps(8, 2, ids.size, seed=1), maps(8, 1, ids.size, seed=2)
    net = HealpixViT(NSIDE, 2, 1, cell_ids=ids, backend="torch", **SMALL)
    net.fit(x, y, n_epoch=2, batch_size=4, verbose=False)
    path = tmp_path / "vit.npz"
    net.save(path)
    expected = net.predict(x)
    for name in ("tensorflow", "numpy"):
        loaded = HealpixViT.load(path, backend=name)
        assert loaded.token_nside == net.token_nside
        np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not {"torch", "tensorflow"} <= set(BACKENDS), reason="needs torch and tensorflow")
def test_gradients_agree_between_torch_and_tensorflow():
    import tensorflow as tf
    import torch

    ids = disc_ids()
    x, y = maps(2, 2, ids.size, seed=4), maps(2, 1, ids.size, seed=5)
    kwargs = dict(cell_ids=ids, seed=2, **SMALL)
    tnet = HealpixViT(NSIDE, 2, 1, backend="torch", **kwargs)
    loss = torch.mean((tnet(x) - torch.as_tensor(y)) ** 2)
    loss.backward()
    loss = loss.item()
    torch_grads = {name: v.grad.numpy() for name, v in tnet.named_variables() if v.requires_grad}

    fnet = HealpixViT(NSIDE, 2, 1, backend="tensorflow", **kwargs)
    names, variables = zip(*((n, v) for n, v in fnet.named_variables() if v.trainable))
    with tf.GradientTape() as tape:
        tf_loss = tf.reduce_mean((fnet(x) - y) ** 2)
    tf_grads = dict(zip(names, (g.numpy() for g in tape.gradient(tf_loss, variables))))
    assert abs(float(loss) - float(tf_loss)) <= 1e-5 * abs(float(loss))
    assert set(torch_grads) == set(tf_grads)
    for name in ["embed.weight", "pos_embed.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc1.bias",
                 "blocks.0.norm1.scale", "norm.shift", "head.weight", "skip.weight"]:
        ref, got = torch_grads[name], tf_grads[name]
        assert np.linalg.norm(ref) > 0, name
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert rel < 1e-4, f"{name}: relative gradient difference {rel:.2e}"


@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_fit_lowers_validation_loss(backend):
    # Target: the input plus the mean of the input over its token (the transformer must learn it).
    nside, ids = 4, None
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 1, 192)).astype("float32")
    y = x + 2.0 * np.repeat(x.reshape(48, 1, 12, 16).mean(axis=-1), 16, axis=-1)
    net = HealpixViT(nside, 1, 1, cell_ids=ids, token_nside=1, embed_dim=16, depth=1, num_heads=2,
                     backend=backend, seed=0)
    before = float(np.mean((net.predict(x[32:]) - y[32:]) ** 2))
    history = net.fit(x[:32], y[:32], x[32:], y[32:], n_epoch=10, batch_size=8, lr=1e-2, verbose=False)
    assert history["val_loss"][-1] < 0.3 * before


@pytest.mark.skipif("tensorflow" not in BACKENDS, reason="needs tensorflow")
def test_tf_function_with_unknown_batch():
    import tensorflow as tf

    ids = disc_ids()
    net = HealpixViT(NSIDE, 2, 1, cell_ids=ids, backend="tensorflow", **SMALL)
    fn = tf.function(net, input_signature=[tf.TensorSpec((None, 2, ids.size), tf.float32)])
    x = maps(3, 2, ids.size)
    np.testing.assert_allclose(fn(tf.constant(x)).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, name", [
    (dict(token_nside=3), "token_nside"),
    (dict(token_nside=16), "token_nside"),
    (dict(token_nside=0), "token_nside"),
    (dict(embed_dim=10, num_heads=4), "embed_dim"),
    (dict(embed_dim=0), "embed_dim"),
    (dict(num_heads=0), "num_heads"),
    (dict(depth=0), "depth"),
    (dict(mlp_ratio=0.0), "mlp_ratio"),
    (dict(in_nside=6), "in_nside"),
    (dict(task="clustering"), "task"),
])
def test_bad_arguments(kwargs, name):
    args = dict(in_nside=NSIDE, n_chan_in=2, out_channels=1, backend="numpy")
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        HealpixViT(**args)


def test_wrong_channel_count():
    net = HealpixViT(NSIDE, 2, 1, backend="numpy", **SMALL)
    with pytest.raises(ValueError, match="n_chan_in"):
        net(maps(1, 3, 12 * NSIDE**2))
    with pytest.raises(ValueError, match="N_cells"):
        net(maps(1, 2, 100))


def test_default_token_level_keeps_attention_affordable():
    """The default token level is in_nside // 4 unless the domain would then hold more than
    3072 tokens; it is coarsened until it does not (full sky nside 256: tokens at nside 16)."""
    assert HealpixViT(16, 1, 1, backend="numpy", **SMALL).token_nside == 4
    big = HealpixViT(256, 1, 1, backend="numpy", **SMALL)
    assert big.token_nside == 16 and big.n_tokens == 3072
    ids = hp.query_disc(1024, hp.ang2vec(1.0, 1.0), np.radians(2.0), nest=True)
    regional = HealpixViT(1024, 1, 1, cell_ids=ids, backend="numpy", **SMALL)
    assert regional.token_nside == 256 and regional.n_tokens <= 3072
    with pytest.raises((TypeError, ValueError), match="cell_ids"):
        HealpixViT(16, 1, 1, cell_ids=[0.5, 1.5], backend="numpy", **SMALL)
