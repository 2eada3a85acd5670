"""``reduce_distance``: the mean squared distance between two sets of statistics, optionally in
units of a per-coefficient standard deviation (the loss of the library we are modelled on).

>>> import numpy as np
>>> from foscat_core.scattering import funct, reduce_distance
>>> op = funct(KERNELSZ=3, NORIENT=2, backend="numpy")
>>> batch = op.eval(np.random.default_rng(0).normal(size=(4, 48)))   # 4 realisations
>>> ref, sigma = batch.mean_batch(), batch.std_batch()
>>> d = reduce_distance(batch, ref, sigma)      # mean over b and coefficients of |s_b - ref|**2 / sigma**2
>>> round(float(d), 6)                          # each coefficient contributes var / sigma**2 = 1
1.0
"""

import numpy as np

from .statistics import ScatteringStatistics


def reduce_distance(stat, ref, sigma=None):
    """Mean over all coefficients of ``|stat - ref|**2`` (divided by ``sigma**2`` when given).

    Every coefficient counts once (a complex one through ``|z|**2``, not as two parts), every map
    of the batch too: ``mean_{b, c} |stat[b, c] - ref[b, c]|**2 / sigma[c]**2``.

    Parameters
    ----------
    stat : ScatteringStatistics
        Statistics of the maps being fitted, batch ``B`` (e.g. ``op.eval(x)`` inside a loss).
    ref : ScatteringStatistics
        Target statistics of the same operator settings and shapes, batch ``B`` or 1 (e.g. a
        ``mean_batch()``), which broadcasts over ``stat``'s batch (and the other way round).
    sigma : ScatteringStatistics, optional
        Real, positive, finite per-coefficient scales with ``ref``'s layout and batch 1 (or B),
        typically ``realisations.std_batch()``. A coefficient of zero scale (constant over the
        realisations) would weigh infinitely: that is a ``ValueError``; drop it or add a floor
        (``sigma + eps``). Values are checked on the host, so ``sigma`` must hold values (not
        symbolic tensors); it is usually a constant of the loss.

    Returns
    -------
    backend scalar
        Differentiable with respect to ``stat`` (and ``ref``) on every backend.

    Raises
    ------
    TypeError
        An argument that is not a :class:`ScatteringStatistics`, or a complex ``sigma``.
    ValueError
        Statistics of different coefficients, operator settings or shapes (naming what
        differs), or a ``sigma`` with a zero, negative or non-finite entry.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.scattering import funct
    >>> op = funct(KERNELSZ=3, NORIENT=2, backend="numpy")
    >>> a, b = op.eval(np.ones(48) + np.arange(48) / 48), op.eval(np.arange(48) / 48)
    >>> bool(np.isclose(reduce_distance(a, b), ((a - b) ** 2).reduce_mean()))
    True
    >>> reduce_distance(a, b, sigma=(a - a).abs())
    Traceback (most recent call last):
    ...
    ValueError: sigma must be positive and finite for every coefficient; S0 has 2 entries that are not (...)
    """
    for name, value in (("stat", stat), ("ref", ref)):
        if not isinstance(value, ScatteringStatistics):
            raise TypeError(f"{name} must be ScatteringStatistics (from funct.eval), got {type(value).__name__}")
    dist = (stat - ref) ** 2
    if sigma is not None:
        _check_sigma(sigma)
        dist = dist / sigma**2
    return dist.reduce_mean()


def _check_sigma(sigma):
    if not isinstance(sigma, ScatteringStatistics):
        raise TypeError(f"sigma must be ScatteringStatistics (e.g. realisations.std_batch()), got "
                        f"{type(sigma).__name__}")
    cplx = [n for n in sigma.names if sigma.is_complex(n)]
    if cplx:
        raise TypeError(f"sigma must be real statistics (std_batch() gives them); {', '.join(cplx)} are complex")
    for name in sigma.names:
        values = np.asarray(sigma.backend.to_numpy(sigma[name]))
        bad = int(np.count_nonzero(~(np.isfinite(values) & (values > 0))))
        if bad:
            raise ValueError(f"sigma must be positive and finite for every coefficient; {name} has {bad} entries "
                             "that are not (a constant coefficient over the realisations? add a floor: sigma + eps)")
