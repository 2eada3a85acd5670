"""The scenarios of test_distributed.py, run in one process (the reference) or on every rank of
``torchrun`` (``python -m torch.distributed.run --standalone --nproc_per_node 2
tests/_distributed_worker.py OUT_DIR``), which writes ``OUT_DIR/rank<r>.npz``."""

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
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), synthesis=result, train_loss=h1["train_loss"],
             val_loss=h1["val_loss"], iter_loss=h2["train_loss"], **{f"w.{k}": v for k, v in weights.items()})
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
