"""The one-point term of a synthesis loss: how far a map's histogram is from the target's.

Scattering statistics fix the power in every octave but constrain the one-point distribution
(skewness, kurtosis, the area of excess sets) only loosely: on a lognormal target at nside 64
an L-BFGS synthesis on the statistics alone ends with 0.79 of the target's skewness and 0.62 of
its kurtosis (``benchmarks/README.md``). Adding :func:`histogram_distance` to the loss matches
them without changing the spectrum.

The distance is the squared 1-D Wasserstein-2 distance between the values of ``x`` and the
target's, ``mean_i (sort(x)_i - q_i)**2 / var(target)``, where ``q`` are the target's sorted
values (interpolated to ``x``'s number of cells when the two differ, averaged over the target
maps when there are several). Sorting is differentiable: the gradient reaches the cell holding
each rank. Dividing by the target's variance makes the weight of the term scale-free.
"""

import numpy as np

from foscat_core._arrays import to_host
from foscat_core.backends import backend_of, get_backend


def target_quantiles(target, n_cells):
    """``(q, var)``: the sorted values of ``target`` ((N_t,) or (M, N_t), averaged over its maps)
    at ``n_cells`` evenly spaced ranks, and its variance (float64, host)."""
    t = np.asarray(to_host(target), dtype=np.float64)
    if t.ndim not in (1, 2) or t.shape[-1] < 2:
        raise ValueError(f"target must be a map (N,) or maps (M, N) with N >= 2, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("target holds NaN or infinite values; pass its valid cells only (e.g. target[~np.isnan(target)])")
    t = t.reshape(-1, t.shape[-1])
    var = float(t.var())
    if var <= 0.0:
        raise ValueError("target is constant: its histogram distance is undefined (its variance is zero)")
    q = np.sort(t, axis=1).mean(axis=0)
    if q.size != n_cells:
        q = np.interp((np.arange(n_cells) + 0.5) / n_cells, (np.arange(q.size) + 0.5) / q.size, q)
    return q, var


def quantile_distance(xp, x, quantiles, inv_var):
    """``mean over maps and ranks of (sort(x)_i - quantiles_i)**2 * inv_var`` for backend maps
    ``x`` (N,) or (B, N) and backend ``quantiles`` (N,): the distance once the target's quantiles
    are known (the generator's one-point term computes them once per fit)."""
    return xp.mean((xp.sort(x, axis=-1) - quantiles) ** 2) * inv_var


def histogram_distance(x, target):
    """Squared Wasserstein-2 distance between the values of ``x`` and those of ``target``, over
    the target's variance: a differentiable one-point term to add to a synthesis loss.

    Parameters
    ----------
    x : backend array, shape (N,) or (B, N)
        The map(s) being synthesised (the ``x`` a :class:`~foscat_core.synthesis.Loss` function
        receives), of any backend; a NumPy array gives a NumPy float.
    target : array, shape (N_t,) or (M, N_t)
        The target map(s), host or backend; N_t may differ from N (the target's quantiles are
        interpolated). To compare part of a map (an inpainted hole, a mask), pass those cells:
        ``histogram_distance(x[..., cells], target[valid])``.

    Returns
    -------
    backend scalar
        ``mean over maps and ranks of (sort(x)_i - q_i)**2 / var(target)``: 0 when ``x`` holds
        the target's values in any order.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.synthesis import histogram_distance
    >>> t = np.random.default_rng(0).lognormal(size=768)
    >>> float(histogram_distance(t[::-1].copy(), t))
    0.0
    >>> round(float(histogram_distance(np.zeros(768), t)), 3) > 1.0
    True
    """
    bk = backend_of(x)
    if bk is None:  # NumPy arrays, lists
        bk, x = get_backend("numpy"), np.asarray(x)
    shape = tuple(x.shape)
    if len(shape) not in (1, 2) or shape[-1] < 1:
        raise ValueError(f"x must be a map (N,) or maps (B, N), got shape {shape}")
    q, var = target_quantiles(target, int(shape[-1]))
    return quantile_distance(bk.xp, x, bk.asarray(q, dtype=bk.dtype_name(x)), 1.0 / var)
