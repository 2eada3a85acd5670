"""Default training losses, written against the array namespace (every backend alike).

Each returns ``loss(prediction, target, weight=None) -> backend scalar`` for (B, C, N_cells)
arrays (or (B, C) per-map outputs). A NaN target marks an unlabelled cell: the loss is the
weighted mean of the per-cell losses over labelled cells only,
``sum(w * l * labelled) / sum(w * labelled)``, and 0 (with a zero gradient) when no cell is
labelled. NaN targets are replaced before any arithmetic, so no NaN reaches the gradient.

Examples
--------
>>> import numpy as np
>>> from foscat_core.backends import get_backend
>>> loss = mse(get_backend("numpy"))
>>> pred = np.zeros((1, 1, 4))
>>> target = np.array([[[1.0, np.nan, 3.0, np.nan]]])   # (B, C, N_cells), two cells labelled
>>> float(loss(pred, target))                          # (1 + 9) / 2
5.0
>>> float(loss(pred, target, weight=np.array([[[1.0, 1.0, 0.0, 1.0]]])))  # the second cell weighs 0
1.0
>>> float(loss(pred, np.full((1, 1, 4), np.nan)))      # nothing labelled: no NaN, no contribution
0.0
"""

import numpy as np

_EPS = 1e-7


def _labelled(xp, target, per_cell):
    """``(target with NaN replaced by 0, labelled mask as target's dtype)``.

    ``per_cell``: one mask per cell over the channel axis (a cell is labelled only when every
    channel is), shape (B, 1, ...) instead of the target's.
    """
    labelled = target == target  # False exactly at NaN, on every backend
    safe = xp.where(labelled, target, 0.0)
    mask = xp.astype(labelled, target.dtype)
    if per_cell:
        mask = xp.min(mask, axis=1, keepdims=True)
    return safe, mask


def _weighted_mean(xp, per_cell_loss, mask, weight):
    """``sum(w * l * mask) / sum(w * mask)``; 0 when the denominator is 0."""
    if weight is not None:
        if len(weight.shape) > len(mask.shape):
            raise ValueError(f"weight must be broadcastable to the targets' shape {tuple(mask.shape)} "
                             f"(at most {len(mask.shape)} axes), got shape {tuple(weight.shape)}")
        mask = mask * weight
    total = xp.sum(mask)
    # A batch with nothing labelled: the numerator is 0 too, so the result and its gradient are 0.
    return xp.sum(per_cell_loss * mask) / xp.where(total > 0, total, 1.0)


def _as_weight(xp, weight, like):
    return None if weight is None else xp.astype(xp.asarray(weight), like.dtype)


def mse(backend):
    """Mean squared error over labelled cells; ``loss(pred, target, weight=None)``."""
    xp = backend.xp

    def loss(pred, target, weight=None):
        safe, mask = _labelled(xp, target, per_cell=False)
        return _weighted_mean(xp, (pred - safe) ** 2, mask, _as_weight(xp, weight, pred))

    return loss


def binary_cross_entropy(backend, from_logits):
    """Binary cross-entropy of probabilities (or logits) over labelled cells, targets in [0, 1]."""
    xp = backend.xp

    def loss(pred, target, weight=None):
        safe, mask = _labelled(xp, target, per_cell=False)
        if from_logits:  # log(1 + exp(-|z|)) keeps large logits finite
            per_cell = xp.where(pred > 0, pred, 0.0) - pred * safe + xp.log(1.0 + xp.exp(-xp.abs(pred)))
        else:
            per_cell = -(safe * xp.log(pred + _EPS) + (1.0 - safe) * xp.log(1.0 - pred + _EPS))
        return _weighted_mean(xp, per_cell, mask, _as_weight(xp, weight, pred))

    return loss


def cross_entropy(backend, from_logits):
    """Categorical cross-entropy over the channel axis, averaged over labelled cells.

    A cell is unlabelled when any channel of its (one-hot) target is NaN. ``weight`` must be
    broadcastable to the per-cell loss (B, 1, N_cells), e.g. (B, 1, 1).
    """
    xp = backend.xp

    def loss(pred, target, weight=None):
        safe, mask = _labelled(xp, target, per_cell=True)
        if from_logits:
            shifted = pred - xp.max(pred, axis=1, keepdims=True)
            log_p = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        else:
            log_p = xp.log(pred + _EPS)
        weight = _as_weight(xp, weight, pred)
        if weight is not None and len(weight.shape) >= 2 and int(weight.shape[1]) != 1:
            raise ValueError(f"weight for the categorical cross-entropy must have 1 channel (axis 1): the loss "
                             f"is per cell, not per class; got shape {tuple(weight.shape)}")
        per_cell = -xp.sum(safe * log_p, axis=1, keepdims=True)
        return _weighted_mean(xp, per_cell, mask, weight)

    return loss


def default_loss(backend, task, final_activation):
    """The default ``loss(pred, target, weight=None)`` of a network's task and head."""
    if task == "regression":
        return mse(backend)
    if final_activation == "softmax":
        return cross_entropy(backend, from_logits=False)
    if final_activation == "sigmoid":
        return binary_cross_entropy(backend, from_logits=False)
    # Segmentation with a raw head: the cross-entropy of its logits.
    return _logits_loss(backend)


def _logits_loss(backend):
    bce, ce = binary_cross_entropy(backend, True), cross_entropy(backend, True)

    def loss(pred, target, weight=None):
        return (bce if int(pred.shape[1]) == 1 else ce)(pred, target, weight)

    return loss


def one_hot(labels, n_classes, n_cells, name):
    """Integer class labels (N, N_cells) or (N, 1, N_cells) → one-hot (N, n_classes, N_cells)."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 2 or labels.shape[1] != n_cells:
        raise ValueError(f"{name}: integer labels must have shape (N, {n_cells}) or (N, 1, {n_cells}), got {labels.shape}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"{name}: labels must be in [0, {n_classes - 1}], got {labels.min()}..{labels.max()}")
    out = np.zeros((labels.shape[0], n_classes, n_cells), dtype=np.float64)
    np.put_along_axis(out, labels[:, None, :], 1.0, axis=1)
    return out
