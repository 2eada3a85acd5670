"""The scenarios of test_distributed.py, run in one process (the reference) or on every rank of
``torchrun`` (``python -m torch.distributed.run --standalone --nproc_per_node 2
tests/_distributed_worker.py OUT_DIR``), which writes ``OUT_DIR/rank<r>.npz``; ``python
tests/_distributed_worker.py tf OUT_DIR`` runs the TensorFlow MirroredStrategy scenario."""

import os
import sys

import numpy as np

N_CELLS = 192  # nside 4, full sky


def fit_data():
    """Inputs (10, 2, 192) and targets (10, 1, 192)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 2, N_CELLS)).astype("float32")
    y = (2.0 * x[:, :1] - 0.5 * x[:, 1:] ** 2).astype("float32")
    return x, y


def tf_fit_scenario():
    """The TensorFlow scenario (smaller, for tracing time): a batch-norm CNN trained 2 epochs on
    arrays, batches of 4, 4 and 2 (shards 2/2, 2/2, 1/1). Returns the weights and train losses."""
    from foscat_core.nn import CNN

    x, y = fit_data()
    net = CNN(4, 2, [4, 4], backend="tensorflow", seed=0)
    h = net.fit(x, y, n_epoch=2, batch_size=4, lr=0.05, optimizer="sgd", normalize=True, verbose=False)
    return {name: net.backend.to_numpy(v) for name, v in net.named_variables()}, h["train_loss"]


def fit_scenario(backend, checkpoint=None, verbose=False):
    """A batch-norm U-Net trained 2 epochs on arrays (batches 4, 4, 2; validation; normalize=True),
    then 1 epoch on an iterable of batches of 5 and 3 (unequal shards). Returns the weights by
    name, and the two histories.

    SGD, not Adam: a convolution bias before a batch norm has a zero gradient, which sums of
    different orders leave at ~1e-10, and Adam's step (grad / sqrt(mean grad²)) turns that noise
    into steps of size lr whatever its scale, in one process as in two."""
    from foscat_core.nn import HealpixUNet

    x, y = fit_data()
    net = HealpixUNet(4, 2, [4, 8], backend=backend, seed=0)
    h1 = net.fit(x, y, x_val=x[:5], y_val=y[:5], n_epoch=2, batch_size=4, lr=0.05, normalize=True, optimizer="sgd",
                 checkpoint=checkpoint, verbose=verbose)
    h2 = net.fit([(x[:5], y[:5]), (x[5:8], y[5:8])], n_epoch=1, lr=0.05, optimizer="sgd",
                 verbose=verbose)
    weights = {name: net.backend.to_numpy(v) for name, v in net.named_variables()}
    return weights, h1, h2


def synthesis_maps():
    """Starting maps (5, 1, 48): each cell near one of the wells ±1 of the double-well loss."""
    rng = np.random.default_rng(2)
    return np.sign(rng.normal(size=(5, 1, 48))) + 0.3 * rng.normal(size=(5, 1, 48))


def synthesis_scenario(backend, maps):
    """L-BFGS-B on a loss that is a sum over maps and cells of a double well
    ``(x² - 1)² + 0.1 (x - t)²``: each cell goes to the minimum of its own well."""
    from foscat_core.synthesis import Loss, Synthesis

    target = np.linspace(-1.0, 1.0, 48)

    def double_well(x, scat_op, args):
        bk = scat_op.backend
        t = bk.asarray(args[0], dtype=bk.dtype_name(x))
        return bk.xp.sum((x * x - 1.0) ** 2 + 0.1 * (x - t) ** 2)

    loss = Loss(double_well, None, target, backend=backend)
    return Synthesis([loss], verbose=False).run(maps, NUM_EPOCHS=200, factr=1.0)


def main(out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    weights, h1, h2 = fit_scenario("torch", checkpoint=os.path.join(out_dir, "fit.ckpt"), verbose=True)
    result = synthesis_scenario("torch", synthesis_maps())
    from foscat_core.nn import CNN

    x, y = fit_data()
    try:  # batches of 1 sample cannot be shared by 2 ranks: both refuse before any step
        CNN(4, 2, [4], backend="torch", seed=0).fit(x[:3], y[:3], n_epoch=1, batch_size=1, verbose=False)
        small_batch_error = "no error"
    except ValueError as err:
        small_batch_error = str(err)
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), synthesis=result, train_loss=h1["train_loss"],
             small_batch_error=small_batch_error,
             val_loss=h1["val_loss"], iter_loss=h2["train_loss"], **{f"w.{k}": v for k, v in weights.items()})
    dist.destroy_process_group()


def tf_main(out_dir):
    """Single device, then a MirroredStrategy over 2 logical CPU devices (configured before TF
    starts); also the errors of fit under an unsupported strategy and of a network built outside
    the strategy's scope. Writes ``OUT_DIR/tf.npz``."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    ref, ref_loss = tf_fit_scenario()
    strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    with strategy.scope():
        got, got_loss = tf_fit_scenario()
    errors = {}
    from foscat_core.nn import CNN

    x, y = fit_data()
    outside = CNN(4, 2, [4], backend="tensorflow", seed=0)
    for key, scope, net in (("other_strategy", tf.distribute.OneDeviceStrategy("/CPU:0"), outside),
                            ("outside_scope", strategy, outside)):
        with scope.scope():
            try:
                net.fit(x, y, n_epoch=1, batch_size=4, verbose=False)
                errors[key] = "no error"
            except ValueError as err:
                errors[key] = str(err)
    np.savez(os.path.join(out_dir, "tf.npz"), replicas=strategy.num_replicas_in_sync, ref_loss=ref_loss,
             got_loss=got_loss, **{f"ref.{k}": v for k, v in ref.items()}, **{f"got.{k}": v for k, v in got.items()},
             **{f"error.{k}": v for k, v in errors.items()})


if __name__ == "__main__":
    if sys.argv[1] == "tf":
        tf_main(sys.argv[2])
    else:
        main(sys.argv[1])
