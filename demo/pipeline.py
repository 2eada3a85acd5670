"""The demo's steps: data, U-Net training and its skill, then a hybrid synthesis.

Each step returns plain NumPy results and numbers; :mod:`.report` turns them into pictures,
a JSON file and a summary table.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from . import data


@dataclass
class DemoConfig:
    backend: str = "torch"
    nside: int = 64
    radius_deg: float = 30.0
    n_train: int = 48
    n_val: int = 12
    epochs: int = 20
    batch_size: int = 8
    chanlist: tuple = (16, 32, 64)
    noise: float = 1.0
    synthesis_iterations: int = 60
    prior_weight: float = 1.0
    seed: int = 0
    verbose: bool = True

    @classmethod
    def quick(cls, **overrides):
        """A CI-sized run: small nside, few maps and epochs (well under a minute)."""
        base = dict(nside=16, radius_deg=40.0, n_train=32, n_val=8, epochs=8, chanlist=(8, 16),
                    synthesis_iterations=15)
        base.update(overrides)
        return cls(**base)


@dataclass
class Results:
    config: DemoConfig
    cell_ids: np.ndarray = None
    mask: np.ndarray = None
    history: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def make_data(cfg):
    ids = data.region(cfg.nside, cfg.radius_deg)
    clean = data.draw_fields(cfg.n_train + cfg.n_val, cfg.nside, ids, cfg.seed)
    mask = data.observation_mask(cfg.nside, ids, seed=cfg.seed + 7)
    inputs = data.observe(clean, mask, cfg.noise, cfg.seed + 1)
    split = cfg.n_train
    return ids, mask, (inputs[:split], clean[:split, None]), (inputs[split:], clean[split:, None])


def train_unet(cfg, ids, train, val):
    """Train a HealpixUNet on the region; returns (network, history, numbers)."""
    from foscat_core.nn import HealpixUNet

    net = HealpixUNet(in_nside=cfg.nside, n_chan_in=2, chanlist=list(cfg.chanlist), cell_ids=ids, out_channels=1,
                      backend=cfg.backend, seed=cfg.seed)
    t0 = time.perf_counter()
    history = net.fit(train[0].astype(np.float32), train[1].astype(np.float32), x_val=val[0].astype(np.float32),
                      y_val=val[1].astype(np.float32), n_epoch=cfg.epochs, batch_size=cfg.batch_size, lr=3e-3,
                      view_epoch=0, verbose=cfg.verbose)
    seconds = time.perf_counter() - t0
    pred = net.predict(val[0].astype(np.float32))
    truth = val[1]
    # The trivial answer: the observation where observed, the field's mean (0) in the gaps.
    baseline = val[0][:, :1] * val[0][:, 1:2]
    mse_net = float(np.mean((pred - truth) ** 2))
    mse_base = float(np.mean((baseline - truth) ** 2))
    numbers = {"train_seconds": seconds, "n_parameters": int(net.n_parameters()),
               "val_loss_first_epoch": float(history["val_loss"][0]), "val_loss_final": float(history["val_loss"][-1]),
               "val_mse_network": mse_net, "val_mse_baseline": mse_base, "skill_score": 1.0 - mse_net / mse_base}
    return net, history, pred, numbers


def hybrid_synthesis(cfg, net, ids, clean_train, target_map):
    """Synthesise a field on the region from white noise with two losses: the distance of its
    scattering statistics to those of the clean training maps, and the trained U-Net used as a
    prior (a clean field is a fixed point of the denoiser: ``net([x, 1]) ≈ x``)."""
    from foscat_core.scattering import funct
    from foscat_core.synthesis import Loss, Synthesis

    bk = net.backend
    op = funct(KERNELSZ=3, NORIENT=4, all_type="float32", backend=bk)
    xp = bk.xp
    # The target: the mean statistics of the clean training maps.
    target = op.eval(clean_train.astype(np.float32), cell_ids=ids, nside=cfg.nside, norm="self").mean_batch()
    ones = bk.asarray(np.ones((1, 1, len(ids)), np.float32))

    def statistics_loss(x, scat_op, args):
        stats = scat_op.eval(x, cell_ids=ids, nside=cfg.nside, norm="self")
        return stats.reduce_mean_batch((stats - args[0]) ** 2)

    def network_prior(x, scat_op, args):
        field_ = xp.reshape(x, (1, 1, -1))
        return args[1] * xp.mean((args[0](xp.concat([field_, ones], axis=1)) - field_) ** 2)

    net.eval()
    losses = [Loss(statistics_loss, op, target, name="scattering"),
              Loss(network_prior, op, net, cfg.prior_weight, name="U-Net prior")]
    start = np.random.default_rng(cfg.seed + 3).normal(size=len(ids)) * float(np.std(clean_train))
    solver = Synthesis(losses, verbose=cfg.verbose)
    t0 = time.perf_counter()
    result = solver.run(start.astype(np.float32), NUM_EPOCHS=cfg.synthesis_iterations,
                        EVAL_FREQUENCY=max(1, cfg.synthesis_iterations // 4))
    seconds = time.perf_counter() - t0

    def distance(m):
        stats = op.eval(np.asarray(m, np.float32)[None], cell_ids=ids, nside=cfg.nside, norm="self")
        return float(bk.to_numpy(stats.reduce_mean_batch((stats - target) ** 2)))

    numbers = {"synthesis_seconds": seconds, "iterations": int(cfg.synthesis_iterations),
               "stat_distance_start": distance(start), "stat_distance_final": distance(result),
               "stat_distance_true_field": distance(target_map),
               "loss_history": [float(v) for v in np.asarray(solver.get_history()).reshape(-1)]}
    numbers["stat_distance_reduction"] = numbers["stat_distance_start"] / max(numbers["stat_distance_final"], 1e-30)
    return op, target, start, result, numbers
