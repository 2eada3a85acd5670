"""``Network.as_keras_layer()``: ``keras.Model.fit`` trains the network itself."""

import importlib.util

import numpy as np
import pytest

from foscat_core.nn import CNN, HealpixUNet

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

NSIDE = 2
NPIX = 12 * NSIDE**2


def regression(n=32, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 1, NPIX)).astype("float32")
    return x, 2.0 * x + 1.0


def keras_model(net, jit_compile=False):
    model = keras.Sequential([keras.Input(shape=(1, NPIX)), net.as_keras_layer()])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_trains_the_network(jit_compile):
    net = CNN(NSIDE, 1, [4], backend="tensorflow", seed=0)
    model = keras_model(net, jit_compile)
    layer = model.layers[0]
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == net.n_parameters()
    assert {id(w.value) for w in model.trainable_weights} == {id(v) for v in net.parameters()}
    assert len(model.non_trainable_weights) == len(net.named_variables()) - len(net.parameters()) > 0

    x, y = regression()
    before = {name: v.numpy().copy() for name, v in net.named_variables()}
    loss = model.fit(x, y, epochs=6, batch_size=8, shuffle=False, verbose=0).history["loss"]
    assert loss[-1] < 0.7 * loss[0]
    changed = [name for name, v in net.named_variables() if not np.array_equal(v.numpy(), before[name])]
    assert {"convs.0.weight", "head.weight"} <= set(changed)
    assert any("running_mean" in name for name in changed)  # fit runs the network in training mode
    assert net.training  # the flag is the network's again after each call
    ours = net.predict(x)
    np.testing.assert_allclose(model.predict(x, verbose=0), ours, rtol=1e-5, atol=1e-5 * np.abs(ours).max())
    assert float(np.mean((ours - y) ** 2)) < loss[0]


def test_training_argument_sets_the_flag_for_the_call():
    net = CNN(NSIDE, 1, [4], backend="tensorflow", seed=0)
    layer = net.as_keras_layer()
    x, _ = regression(4)
    x[0] += 3.0  # batch statistics differ from the (initial) running ones
    net.train()
    ref_train = net(x).numpy()  # batch statistics (and running ones updated)
    net.eval()
    ref_eval = net(x).numpy()  # running statistics
    assert not np.allclose(ref_train, ref_eval)
    net.train()
    np.testing.assert_array_equal(layer(x, training=False).numpy(), ref_eval)
    assert net.training
    net.eval()
    np.testing.assert_array_equal(layer(x, training=True).numpy(), ref_train)
    assert not net.training
    np.testing.assert_array_equal(layer(x).numpy(), net(x).numpy())  # None: the network's flag (eval)


@pytest.mark.parametrize("backend", [b for b in ("numpy", "torch", "jax") if importlib.util.find_spec(b)])
def test_another_backend_is_a_type_error(backend):
    net = CNN(NSIDE, 1, [4], backend=backend, seed=0)
    with pytest.raises(TypeError, match="backend='tensorflow'"):
        net.as_keras_layer()


def test_a_mixed_precision_policy_is_refused():
    net = CNN(NSIDE, 1, [4], backend="tensorflow", seed=0)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        with pytest.raises(ValueError, match="mixed_bfloat16"):
            net.as_keras_layer()
    finally:
        keras.config.set_dtype_policy("float32")


def test_a_network_is_not_built_silently_in_float32_under_a_mixed_policy():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        with pytest.raises(ValueError, match=r"'mixed_bfloat16'.*building a network"):
            CNN(NSIDE, 1, [4], backend="tensorflow", seed=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert CNN(NSIDE, 1, [4], backend="tensorflow", seed=0)(np.zeros((1, 1, 12 * NSIDE**2), "float32")).shape[0] == 1
