"""TensorFlow under XLA (``tf.function(jit_compile=True)``): the same numbers as eager.

XLA has no kernel for TensorFlow's sparse-dense products, so a product traced for XLA is a gather
(``backends/tensorflow/sparse.py``); everything else is TensorFlow's own ops. Each check runs one
function eagerly and compiled, and compares values and gradients relative to the largest
reference value: 1e-5 in float32, 1e-10 in float64.
"""

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from conftest import TOLERANCE, cached_funct

tf = pytest.importorskip("tensorflow")

from foscat_core.nn import CNN, HealpixUNet, HealpixViT  # noqa: E402
from foscat_core.nn.gcnn import GCNN  # noqa: E402

NSIDE = 4
NPIX = 12 * NSIDE**2


def assert_same(got, ref, dtype):
    """Every tensor of ``got`` equals ``ref``'s within TOLERANCE[dtype] x the largest |ref|."""
    got, ref = tf.nest.flatten(got), tf.nest.flatten(ref)
    assert len(got) == len(ref)
    scale = max(float(np.max(np.abs(r.numpy()))) for r in ref)
    assert scale > 0
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype
        err = float(np.max(np.abs(g.numpy() - r.numpy()), initial=0.0))
        assert err <= TOLERANCE[dtype] * scale, f"error {err:.3e} > {TOLERANCE[dtype]:.0e} x {scale:.3e}"


def eager_and_xla(fn, *args):
    """``fn(*args)`` run eagerly and under ``tf.function(jit_compile=True)``."""
    return fn(*args), tf.function(fn, jit_compile=True)(*args)


def graph_ops(fn, *args, jit_compile):
    graph = tf.function(fn, jit_compile=jit_compile).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def value_and_grads(fn, inputs):
    """``fn`` of ``inputs`` (tensors or variables) and the gradient of its sum of squares."""
    def run(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            out = fn(*args)
            loss = tf.reduce_sum(tf.square(out))
        return out, tape.gradient(loss, args)
    return run


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c_in, c_out", [(2, 3), (5, 2)])  # interpolate-first / contract-first
def test_conv_and_its_gradients(dtype, c_in, c_out):
    st = fc.SphericalStencil(NSIDE, 3, n_gauges=2, backend="tensorflow", dtype=dtype)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, c_in, NPIX)), dtype)
    w = tf.constant(rng.normal(size=(2, c_in, c_out, 9)), dtype)
    ref, got = eager_and_xla(value_and_grads(st.conv, (x, w)), x, w)
    assert_same(got, ref, dtype)


def test_conv_on_a_region_with_an_unknown_batch():
    nside = 8
    ids = hp.query_disc(nside, hp.ang2vec(1.0, 0.5), np.radians(30.0), nest=True)
    st = fc.SphericalStencil(nside, 5, cell_ids=ids, backend="tensorflow", dtype="float64")
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 3, ids.size)))
    w = tf.constant(rng.normal(size=(3, 4, 25)))
    signature = [tf.TensorSpec((None, 3, ids.size), tf.float64), tf.TensorSpec(w.shape, tf.float64)]
    compiled = tf.function(st.conv, jit_compile=True, input_signature=signature)
    assert_same(compiled(x, w), st.conv(x, w), "float64")


def test_the_sparse_kernel_is_kept_outside_xla():
    st = fc.SphericalStencil(NSIDE, 3, backend="tensorflow", dtype="float32")
    x, w = tf.zeros((2, 2, NPIX)), tf.zeros((2, 3, 9))
    plain = graph_ops(st.conv, x, w, jit_compile=False)
    compiled = graph_ops(st.conv, x, w, jit_compile=True)
    assert "SparseTensorDenseMatMul" in plain and "GatherV2" not in plain
    assert not {op for op in compiled if op.startswith("Sparse")} and "GatherV2" in compiled


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_depthwise_filter(dtype):
    st = fc.SphericalStencil(NSIDE, 5, backend="tensorflow", dtype=dtype)
    rng = np.random.default_rng(2)
    maps, bank = tf.constant(rng.normal(size=(4, NPIX)), dtype), tf.constant(rng.normal(size=(3, 25)), dtype)
    ref, got = eager_and_xla(value_and_grads(st.filter, (maps, bank)), maps, bank)
    assert_same(got, ref, dtype)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_down_and_up(mode):
    x = tf.constant(np.random.default_rng(3).normal(size=(2, 3, NPIX)))

    def down_up(x):
        coarse, _ = fc.down(x, NSIDE, mode=mode, backend="tensorflow")
        return fc.up(coarse, NSIDE // 2, backend="tensorflow")[0] + x

    ref, got = eager_and_xla(value_and_grads(down_up, (x,)), x)
    assert_same(got, ref, "float64")


NETWORKS = {
    "cnn": lambda dtype: CNN(NSIDE, 2, [4, 4], out_channels=3, G=2, backend="tensorflow", dtype=dtype),
    "unet": lambda dtype: HealpixUNet(NSIDE, 2, [4, 6], out_channels=3, backend="tensorflow", dtype=dtype),
    "vit": lambda dtype: HealpixViT(NSIDE, 2, 3, token_nside=1, embed_dim=16, depth=1, num_heads=2,
                                    backend="tensorflow", dtype=dtype),
    "gcnn": lambda dtype: GCNN(nparam=3, chanlist=[2, 4, 3], in_nside=NSIDE, backend="tensorflow", dtype=dtype),
}


# float64 for the two costliest to compile: the training step below (UNet, float64).
@pytest.mark.parametrize("kind, dtype", [(kind, dtype) for kind in sorted(NETWORKS) for dtype in ("float32", "float64")
                                         if (kind, dtype) not in {("cnn", "float64"), ("unet", "float64")}])
def test_network_forward_and_gradients(kind, dtype):
    net = NETWORKS[kind](dtype)
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 2, NPIX)), dtype)

    def step(x):
        with tf.GradientTape() as tape:
            y = net(x)
            loss = tf.reduce_mean(tf.square(y))
        return y, tape.gradient(loss, net.trainable_variables)

    for training in (True, False):
        net.train(training)
        ref, got = eager_and_xla(step, x)
        assert_same(got, ref, dtype)


@pytest.mark.parametrize("kind", ["unet", "vit"])
def test_a_compiled_training_step_updates_the_weights_as_eager(kind):
    """One Adam step (batch-norm statistics updated inside) compiled with XLA, against eager."""
    x = tf.constant(np.random.default_rng(5).normal(size=(2, 2, NPIX)))
    nets = [NETWORKS[kind]("float64") for _ in range(2)]
    for net, compile_ in zip(nets, (False, True)):
        opt = net.fw.optimizer(net, "adam", 1e-2, 1e-5, 0.9)

        def step(x, net=net, opt=opt):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(net(x) - 1.0))
            opt.apply(tape.gradient(loss, net.parameters()))
            return loss

        (tf.function(step, jit_compile=True) if compile_ else step)(x)
    before = NETWORKS[kind]("float64").named_variables()
    eager, compiled = (dict(net.named_variables()) for net in nets)
    assert any(not np.array_equal(v.numpy(), eager[name].numpy()) for name, v in before)  # it trained
    assert_same([compiled[name] for name in eager], list(eager.values()), "float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scattering_loss_and_its_gradient(dtype):
    op = cached_funct("tensorflow", KERNELSZ=3, NORIENT=4, all_type=dtype)
    rng = np.random.default_rng(6)
    target = op.eval(tf.constant(rng.normal(size=(1, NPIX)), dtype))
    x = tf.constant(rng.normal(size=(1, NPIX)), dtype)

    def loss(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = op.reduce_distance(op.eval(x), target)
        return value, tape.gradient(value, x)

    ref, got = eager_and_xla(loss, x)
    assert float(ref[0]) > 0
    assert_same(got[0], ref[0], dtype)
    assert_same(got[1], ref[1], dtype)
