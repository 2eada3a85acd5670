"""The training loop behind :meth:`Network.fit` (the docstring there is the user's reference)."""

import threading
import weakref

import numpy as np
from tqdm.auto import tqdm

from foscat_core._validation import check_positive_int

from .checkpoint import assign_weights, host_weights, read_checkpoint, write_checkpoint
from .optimizers import check_hyper, check_optimizer, resolve_schedule, scheduled_lr
from .training_data import data_moments, training_data, weighted_objective

# Per network, kept out of its attributes (so copies and pickles stay plain): the optimiser that
# a later fit continues, and the lock that serialises fit / predict / evaluation on it.
_OPTIMIZERS = weakref.WeakKeyDictionary()
_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def network_lock(net):
    """The re-entrant lock of ``net``: evaluation flips its training flag, so it runs alone."""
    with _LOCKS_LOCK:
        lock = _LOCKS.get(net)
        if lock is None:
            lock = _LOCKS[net] = threading.RLock()
        return lock


def persistent_optimizer(net, kind, lr, weight_decay, momentum, fresh):
    """The optimiser a previous ``fit`` left on ``net`` when its kind, momentum and device are
    the same (and not ``fresh``); a new one otherwise."""
    key = (kind, momentum, str(net.backend.device))
    held = _OPTIMIZERS.get(net)
    if held is not None and held[0] == key and not fresh:
        return held[1]
    optimizer = net.fw.optimizer(net, kind, lr, weight_decay, momentum)
    _OPTIMIZERS[net] = (key, optimizer)
    return optimizer


class EarlyStopping:
    """Best monitored loss, its epoch and weights; ``patience`` epochs without improvement stop."""

    def __init__(self, patience, state=None, best_weights=None):
        self.patience = patience
        self.best, self.best_epoch, self.wait = np.inf, None, 0
        if state:
            self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights = best_weights

    def update(self, net, loss, epoch):
        """Record epoch ``epoch``'s loss; True when training should stop."""
        if self.patience is None:
            return False
        if loss < self.best:
            self.best, self.best_epoch, self.wait = loss, epoch, 0
            self.best_weights = host_weights(net)
            return False
        self.wait += 1
        return self.wait >= self.patience

    def state(self):
        return None if self.patience is None else {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}


def check_fit_arguments(n_epoch, batch_size, lr, weight_decay, optimizer, momentum, patience, normalize):
    n_epoch = check_positive_int(n_epoch, "n_epoch")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_hyper(lr, "lr", positive=True)
    weight_decay = check_hyper(weight_decay, "weight_decay", positive=False)
    optimizer, momentum = check_optimizer(optimizer, momentum)
    if patience is not None:
        patience = check_positive_int(patience, "patience")
    if normalize not in (False, True, "recompute"):
        raise ValueError(f"normalize must be False, True or 'recompute', got {normalize!r}")
    return n_epoch, batch_size, lr, weight_decay, optimizer, momentum, patience


def fit(net, x_train, y_train=None, x_val=None, y_val=None, *, n_epoch, batch_size, lr, weight_decay,
        sample_weight, normalize, optimizer, momentum, lr_schedule, patience, checkpoint, resume,
        loss_fn, seed, verbose, view_epoch):
    n_epoch, batch_size, lr, weight_decay, optimizer, momentum, patience = check_fit_arguments(
        n_epoch, batch_size, lr, weight_decay, optimizer, momentum, patience, normalize)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=path, the file to resume from")
    schedule = resolve_schedule(lr_schedule, n_epoch)
    with network_lock(net):
        # First, so the numpy backend (no autograd) refuses before any data is read.
        opt = persistent_optimizer(net, optimizer, lr, weight_decay, momentum, fresh=bool(resume))
        train = training_data(net, x_train, y_train, sample_weight, ("x_train", "y_train", "sample_weight"), n_epoch)
        val = None
        if x_val is not None:
            val = training_data(net, x_val, y_val, None, ("x_val", "y_val", "sample_weight"), n_epoch)
        elif y_val is not None:
            raise ValueError("y_val was given without x_val")
        objective = weighted_objective(net, loss_fn, sample_weight is not None)
        saved = read_checkpoint(checkpoint, net) if resume else None
        if saved is None and (normalize == "recompute" or (normalize and net.normalization is None)):
            net.set_normalization(*data_moments(net, train, batch_size))
        rng = np.random.default_rng(seed)
        history = {"train_loss": [], "val_loss": [], "lr": []}
        stopper = EarlyStopping(patience)
        if saved is not None:
            header, weights, opt_arrays, best = saved
            assign_weights(net, weights, checkpoint)
            opt.load_state_arrays(opt_arrays)
            rng.bit_generator.state = header["rng"]
            history = header["history"]
            stopper = EarlyStopping(patience, header.get("early_stopping"), best)
        dist = net.fw.distribution(net)
        start = len(history["train_loss"])
        if not dist.active:
            step = net.fw.trainer(net, objective, opt)
            return _epochs(net, train, val, step, opt, objective, rng, history, stopper, start, n_epoch,
                           batch_size, lr, weight_decay, schedule, checkpoint, verbose, view_epoch, dist)
        dist.broadcast(net)  # every replica starts from the same weights and statistics
        step = dist.trainer(net, objective, opt)
        with dist.syncing(net):
            return _epochs(net, train, val, step, opt, objective, rng, history, stopper, start, n_epoch,
                           batch_size, lr, weight_decay, schedule, checkpoint, verbose and dist.is_main,
                           view_epoch, dist)


def _train_epoch(net, train, step, rng, batch_size, dist):
    """Mean training loss of one epoch over the global batches (the same on every replica)."""
    total, count = 0.0, 0
    shard = None if not dist.active else _shard_of(dist, train.shuffled)
    for x, y, w, n in train.batches(batch_size, rng if train.shuffled else None, shard=shard):
        args = (net._batch(x), net._batch(y), None if w is None else net._batch(w))
        total += (step(*args, len(x) / n) if dist.active else step(*args)) * n
        count += n
    return total / count


def _shard_of(dist, arrays):
    """``n -> slice`` of a global batch of ``n`` samples this replica takes (at least one sample);
    ``arrays``: the source is arrays cut by ``batch_size`` (else an iterable of batches)."""
    w = dist.world_size
    fix = (f"give batch_size >= {w} and a number of samples whose last batch holds at least {w}" if arrays
           else f"make the iterable yield batches of at least {w} samples")

    def shard(n):
        if n < w:
            raise ValueError(f"a global batch of {n} sample(s) cannot be shared by {w} replicas "
                             f"(each needs at least one): {fix}")
        return dist.shard(n)

    return shard


def _epochs(net, train, val, step, opt, objective, rng, history, stopper, start, n_epoch, batch_size, lr,
            weight_decay, schedule, checkpoint, verbose, view_epoch, dist):
    bar = tqdm(range(start, n_epoch), desc=f"fit {type(net).__name__} ({net.backend.name})", disable=not verbose)
    for epoch in bar:
        epoch_lr = scheduled_lr(lr, schedule, epoch)
        opt.set_hyper(epoch_lr, weight_decay)
        net.train()
        history["train_loss"].append(_train_epoch(net, train, step, rng, batch_size, dist))
        history["lr"].append(epoch_lr)
        line = {"train": f"{history['train_loss'][-1]:.4g}"}
        if val is not None:
            history["val_loss"].append(evaluate(net, val, batch_size, objective, dist))
            line["val"] = f"{history['val_loss'][-1]:.4g}"
        monitored = history["val_loss"][-1] if val is not None else history["train_loss"][-1]
        stop = stopper.update(net, monitored, epoch)
        if stopper.patience is not None:
            history["best_epoch"] = stopper.best_epoch
        if checkpoint is not None and dist.is_main:
            state = {"rng": rng.bit_generator.state, "history": history, "early_stopping": stopper.state()}
            write_checkpoint(checkpoint, net, opt, state, stopper.best_weights)
        bar.set_postfix(line)
        if verbose and view_epoch and (epoch + 1) % view_epoch == 0:
            tqdm.write(f"epoch {epoch + 1}/{n_epoch}  " + "  ".join(f"{k} {v}" for k, v in line.items()))
        if stop:
            if verbose:
                tqdm.write(f"early stop after epoch {epoch + 1}: best epoch {stopper.best_epoch + 1}")
            break
    if stopper.best_weights is not None:
        assign_weights(net, stopper.best_weights, "the best epoch's weights")
    net.train()
    return history


def evaluate(net, data, batch_size, objective, dist=None):
    """Mean loss over ``data`` in evaluation mode (samples weighted by batch size); with an active
    ``dist`` each replica evaluates its shard of every batch and the sums are added up."""
    total, count = 0.0, 0
    shard = dist.shard if dist is not None and dist.active else None
    with network_lock(net), eval_mode(net):
        run = net._evaluator()
        for x, y, w, _ in data.batches(batch_size, shard=shard):
            if len(x) == 0:  # a batch smaller than the number of replicas leaves some without samples
                continue
            value = objective(run(net._batch(x)), net._batch(y), None if w is None else net._batch(w))
            total += float(net.backend.to_numpy(value)) * len(x)
            count += len(x)
    if shard is not None:
        total, count = dist.sum_host([total, count])
    return float(total / count)


class eval_mode:
    """Evaluation mode for the duration of a block, the previous mode restored after it."""

    def __init__(self, net):
        self.net = net

    def __enter__(self):
        self.was_training = self.net.training
        self.net.eval()

    def __exit__(self, *exc):
        self.net.train(self.was_training)
