"""Default training losses, written against the array namespace (every backend alike).

Each returns ``loss(prediction, target) -> backend scalar`` for (B, C, N_cells) arrays.
"""

import numpy as np

_EPS = 1e-7


def mse(backend):
    xp = backend.xp

    def loss(pred, target):
        return xp.mean((pred - target) ** 2)

    return loss


def binary_cross_entropy(backend, from_logits):
    xp = backend.xp

    def loss(pred, target):
        if from_logits:  # log(1 + exp(-|z|)) keeps large logits finite
            return xp.mean(xp.where(pred > 0, pred, 0.0) - pred * target + xp.log(1.0 + xp.exp(-xp.abs(pred))))
        return -xp.mean(target * xp.log(pred + _EPS) + (1.0 - target) * xp.log(1.0 - pred + _EPS))

    return loss


def cross_entropy(backend, from_logits):
    """Categorical cross-entropy over the channel axis, averaged over samples and cells."""
    xp = backend.xp

    def loss(pred, target):
        if from_logits:
            shifted = pred - xp.max(pred, axis=1, keepdims=True)
            log_p = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        else:
            log_p = xp.log(pred + _EPS)
        return -xp.mean(xp.sum(target * log_p, axis=1))

    return loss


def default_loss(backend, task, final_activation):
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
    return lambda pred, target: bce(pred, target) if int(pred.shape[1]) == 1 else ce(pred, target)


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
