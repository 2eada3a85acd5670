"""Keeping L-BFGS-B on finite points: a NaN or infinite loss or gradient is never accepted, nor silent."""

import warnings

import numpy as np


class FiniteGuard:
    """Watches every evaluation of a synthesis and remembers the first non-finite one.

    scipy's L-BFGS-B takes a NaN loss for a converged run and a NaN gradient for a stationary
    point. Instead, a trial point whose loss or gradient is not finite is given :meth:`penalty`,
    a loss far above the line search's starting point, so the line search backs off towards the
    last accepted (finite) map; :meth:`warn` reports it once the run is over.

    Parameters
    ----------
    names : list of str
        The name of each loss, in order, for the messages.
    """

    def __init__(self, names):
        self.names = list(names)
        self.first = None  # (iteration, what) of the first non-finite evaluation
        self.count = 0

    def describe(self, total, per_loss, grad):
        """What is not finite at an evaluation, as a phrase, or ``None`` when everything is finite."""
        bad = [f"loss {name!r} is {value}" for name, value in zip(self.names, per_loss) if not np.isfinite(value)]
        if not bad and not np.isfinite(total):
            bad.append(f"the total loss is {total}")  # finite terms whose sum overflows
        n_bad = int(grad.size - np.count_nonzero(np.isfinite(grad)))
        if n_bad:
            bad.append(f"the gradient has {n_bad} NaN or infinite entr{'y' if n_bad == 1 else 'ies'}")
        return "; ".join(bad) or None

    def record(self, iteration, what):
        """Count a rejected evaluation made during ``iteration`` (1 = the first L-BFGS-B step)."""
        self.count += 1
        if self.first is None:
            self.first = (iteration, what)

    @staticmethod
    def penalty(f_accepted):
        """A finite loss well above ``f_accepted`` (the line search's start): the step is shortened."""
        return f_accepted + 1e3 * (1.0 + abs(f_accepted))

    def warn(self, f_returned, stacklevel=3):
        """One ``RuntimeWarning`` naming the first non-finite evaluation, when there was one."""
        if self.first is None:
            return
        iteration, what = self.first
        warnings.warn(
            f"synthesis: the objective went non-finite at iteration {iteration} ({what}); "
            f"{self.count} such evaluation(s) were rejected and L-BFGS-B backed off, so the map returned is the "
            f"last finite one (loss {f_returned:.6e}). Check the loss for NaN-producing operations (log, sqrt, "
            "division) in the region the synthesis explores.",
            RuntimeWarning, stacklevel=stacklevel,
        )
