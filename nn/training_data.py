"""Training and validation data of ``fit``: arrays or iterables of batches (see
:mod:`.data_sources`), turned into checked host batches ``(x, y, w)`` and streaming statistics."""

import inspect

import numpy as np

from .data_sources import (IterableSource, LazyArray, as_weight_array, check_sample_count, is_lazy_array,
                           take_weights)


def target_shape(net):
    """Per-sample target shape: (C_out, N_cells), or (C_out,) for a globally pooled GCNN."""
    return (net.out_channels,) if getattr(net, "global_pool", False) else (net.out_channels, net.n_cells)


class ArrayData:
    """Samples along the first axis of ``x``, ``y`` and ``w``; lazy ones read batch by batch."""

    shuffled = True

    def __init__(self, net, x, y, w, names):
        self.net, self.names = net, names
        x_name, y_name, w_name = names
        if y is None:
            raise ValueError(f"{x_name} and {y_name} go together: {x_name} is an array, so give its targets as "
                             f"{y_name} (or give {x_name} as an iterable of (x, y) batches)")
        self.x = LazyArray(x, net, x_name) if is_lazy_array(x) else net._host_inputs(x, x_name)
        if isinstance(self.x, LazyArray) and (len(self.x.shape) != 3 or self.x.shape[1:] != (net.n_chan_in, net.n_cells)):
            raise ValueError(f"{x_name} must have shape (N, {net.n_chan_in}, {net.n_cells}), got {self.x.shape}")
        self.n_samples = int(self.x.shape[0])
        if self.n_samples == 0:
            raise ValueError(f"{x_name} holds no samples: fit needs at least one (N >= 1)")
        if is_lazy_array(y):
            self.y = LazyArray(y, net, y_name, has_cells=not getattr(net, "global_pool", False))
        else:
            self.y = net._host_targets(y, y_name, self.n_samples)
        check_sample_count(self.y, self.n_samples, y_name, x_name)
        self.w = None if w is None else as_weight_array(w, self.n_samples, target_shape(net), w_name)

    def batches(self, batch_size, rng=None, shard=None):
        """``(x, y, w, n)`` host batches; shuffled when ``rng`` is given (fit's training data).

        ``n`` is the size of the global batch; with ``shard`` (a function ``n -> slice``, a
        replica's part of a global batch of ``n`` samples) only that part is read and returned.
        """
        order = None if rng is None else rng.permutation(self.n_samples)
        for start in range(0, self.n_samples, batch_size):
            n = min(batch_size, self.n_samples - start)
            lo, hi = (0, n) if shard is None else _bounds(shard(n))
            if order is None:
                idx = slice(start + lo, start + hi)
            else:
                idx = order[start + lo:start + hi]
            yield self._read(self.x, idx, True), self._read(self.y, idx, False), take_weights(self.w, idx), n

    def _read(self, part, idx, inputs):
        if not isinstance(part, LazyArray):
            return part[idx]
        name = self.names[0 if inputs else 1]
        if isinstance(idx, slice):
            values = part.take(idx)
        else:  # lazy stores read sorted indices much faster; the batch keeps the shuffled order
            wanted = np.sort(idx)
            values = part.take(wanted)[np.searchsorted(wanted, idx)]
        if inputs:
            return self.net._host_inputs(values, name)
        return self.net._host_targets(values, name, len(values))


class IterableData:
    """Batches ``(x, y)`` or ``(x, y, w)`` of an iterable source, each one checked."""

    shuffled = False

    def __init__(self, net, source, n_epoch, name):
        self.net, self.name = net, name
        self.source = IterableSource(source, name, n_epoch)
        self.has_weights = None

    def batches(self, batch_size=None, rng=None, shard=None):
        """``(x, y, w, n)`` for each batch of the source (``n`` its size); with ``shard`` (a
        function ``n -> slice``) the replica's part of it: every replica reads the same batches."""
        n = 0
        for i, item in enumerate(self.source):
            where = f"{self.name} batch {i}"
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise ValueError(f"{where} must be a pair (x, y) or a triple (x, y, w), got {type(item).__name__}"
                                 + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""))
            x = self.net._host_inputs(item[0], f"{where} (x)")
            if len(x) == 0:
                raise ValueError(f"{where} holds no samples")
            y = self.net._host_targets(item[1], f"{where} (y)", len(x))
            w = as_weight_array(item[2], len(x), target_shape(self.net), f"{where} (w)") if len(item) == 3 else None
            n += len(x)
            if shard is None:
                yield x, y, w, len(x)
            else:
                part = shard(len(x))
                yield x[part], y[part], (w if w is None or w.shape[0] == 1 else w[part]), len(x)
        if n == 0:
            raise ValueError(f"{self.name} yielded no batch: fit needs at least one sample")


def _bounds(part):
    """``(start, stop)`` of a slice from ``shard`` (no step)."""
    if not isinstance(part, slice) or part.step not in (None, 1):
        raise TypeError(f"shard must return a contiguous slice, got {part!r}")
    return part.start, part.stop


def training_data(net, x, y, w, names, n_epoch):
    """The data of ``fit``: :class:`ArrayData` for arrays, :class:`IterableData` when ``y`` is None."""
    x_name, y_name, w_name = names
    if x is None:
        raise TypeError(f"{x_name} must be an array, a DataArray or an iterable of batches, got None")
    if y is None and not (isinstance(x, np.ndarray) or is_lazy_array(x) or net.backend.is_native(x)):
        if w is not None:
            raise ValueError(f"{w_name} is for array sources; an iterable source gives weights as (x, y, w) triples")
        return IterableData(net, x, n_epoch, x_name)
    return ArrayData(net, x, y, w, names)


def weighted_objective(net, loss_fn, sample_weight_given):
    """``objective(pred, y, w) -> scalar``: ``loss_fn`` (default: the network's) in normalised
    units (identity without normalisation), given the weights when a batch has any. A custom
    ``loss_fn`` gets weights only if it takes a third argument; weights for one that does not
    are a ValueError."""
    takes_weight = loss_fn is None or _takes_weight(loss_fn)
    message = ("sample weights (sample_weight, or (x, y, w) batches) need a loss_fn taking them as a third "
               "argument, loss_fn(prediction, target, weight); this loss_fn takes two")
    if sample_weight_given and not takes_weight:
        raise ValueError(message)
    loss_fn = net.default_loss() if loss_fn is None else loss_fn
    normalize = net.normalize_target

    def objective(pred, y, w):
        pred, y = normalize(pred), normalize(y)
        if w is None:
            return loss_fn(pred, y)
        if not takes_weight:
            raise ValueError(message)
        return loss_fn(pred, y, w)

    return objective


def _takes_weight(fn):
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 3


class ChannelMoments:
    """Per-channel count, mean and sum of squared deviations of finite values, merged batch by
    batch (Chan et al.'s parallel update, float64): one pass, numerically stable."""

    def __init__(self, n_channels):
        self.n = np.zeros(n_channels)
        self.mean = np.zeros(n_channels)
        self.m2 = np.zeros(n_channels)

    def update(self, a):
        """``a`` (B, C, ...) host batch; non-finite values are left out."""
        a = np.moveaxis(np.asarray(a, dtype=np.float64), 1, 0).reshape(len(self.n), -1)
        ok = np.isfinite(a)
        n_b = ok.sum(axis=1).astype(np.float64)
        safe = np.where(ok, a, 0.0)
        mean_b = safe.sum(axis=1) / np.maximum(n_b, 1)
        m2_b = (np.where(ok, a - mean_b[:, None], 0.0) ** 2).sum(axis=1)
        total = self.n + n_b
        delta = mean_b - self.mean
        frac = np.divide(n_b, total, out=np.zeros_like(total), where=total > 0)
        self.mean = self.mean + delta * frac
        self.m2 = self.m2 + m2_b + delta**2 * self.n * frac
        self.n = total

    def mean_std(self, name):
        """Mean and (population) std per channel; a constant channel gets std 1 (only shifted)."""
        if np.any(self.n == 0):
            raise ValueError(f"normalize=True: channel(s) {np.flatnonzero(self.n == 0).tolist()} of {name} "
                             "have no finite value in the training data")
        std = np.sqrt(self.m2 / self.n)
        return self.mean, np.where(std > 0, std, 1.0)


def data_moments(net, data, batch_size):
    """``(x_mean, x_std, y_mean, y_std)`` over the training data in one pass of ``batch_size``
    batches (targets: regression only)."""
    regression = net.task == "regression"
    xm, ym = ChannelMoments(net.n_chan_in), ChannelMoments(net.out_channels) if regression else None
    for x, y, _, _ in data.batches(batch_size):
        xm.update(x)
        if regression:
            ym.update(y)
    x_mean, x_std = xm.mean_std("the inputs")
    if not regression:
        return x_mean, x_std, None, None
    return (x_mean, x_std, *ym.mean_std("the targets"))
