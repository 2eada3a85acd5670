"""The L-BFGS-B loop of a synthesis: scipy moves the free entries of a flat float64 map, restart after
restart, and only ever accepts points where the objective and its gradient are finite."""

import numpy as np
import scipy.optimize

from ._finite import FiniteGuard


class LbfgsLoop:
    """L-BFGS-B restarts over the free entries of ``full``.

    Parameters
    ----------
    objective : callable
        ``objective(full) -> (total, per_loss, grad)``: the total loss (float), the list of the
        terms' values and the gradient (flat float64, ``full``'s size) at the flat float64 map.
    full : ndarray of float64, shape (S,)
        The map, flattened; the free entries are overwritten as the run goes, and it ends on the
        last accepted point.
    free : ndarray of int, shape (F,)
        Flat positions L-BFGS-B moves.
    weight : ndarray of float64, shape (F,)
        Gradient weight of each free entry (``grd_mask``).
    names : list of str
        The terms' names, for the messages of the :class:`FiniteGuard`.
    report : RunReport
    options : dict
        scipy's L-BFGS-B options.
    shape : tuple of int
        Shape of ``in_x`` (for the snapshots handed to ``report``).

    Attributes
    ----------
    iteration : int
        Accepted iterations so far, over all restarts.
    accepted : dict
        ``v`` (free entries), ``f`` and ``g`` of the last accepted point.
    last : tuple or None
        ``(v, total, per_loss, g)`` of the latest evaluation (``g`` of the free entries, weighted).
    result : scipy.optimize.OptimizeResult or None
        scipy's answer of the latest completed restart.
    """

    def __init__(self, objective, full, free, weight, names, report, options, shape):
        self.objective = objective
        self.full, self.free, self.weight, self.shape = full, free, weight, shape
        self.guard = FiniteGuard(names)
        self.report = report
        self.options = options
        self.iteration = 0
        self.accepted = {}
        self.last = None
        self.result = None

    # --- evaluations ---------------------------------------------------------------------------
    def evaluate_raw(self, v):
        """``(total, gradient of the free entries)`` at the free entries ``v``, as computed."""
        self.full[self.free] = v
        total, per_loss, grad = self.objective(self.full)
        self.last = (v.copy(), total, per_loss, grad[self.free] * self.weight)
        return total, self.last[3]

    def evaluate(self, v):
        """What scipy sees: a non-finite point is pushed back (:meth:`FiniteGuard.penalty`), never accepted."""
        total, g = self.evaluate_raw(v)
        what = self.guard.describe(total, self.last[2], g)
        if what is None:
            return total, g
        self.guard.record(self.iteration + 1, what)
        return self.guard.penalty(self.accepted["f"]), self.accepted["g"]

    def snapshot(self, v):
        """A callable giving the host map (shape of ``in_x``) with the free entries ``v``."""

        def current():
            out = self.full.copy()
            out[self.free] = v
            return out.reshape(self.shape)

        return current

    # --- one restart -----------------------------------------------------------------------------
    def start(self, restart):
        """Evaluate the start of ``restart``. False when a refreshed batch made it non-finite (the run
        stops there); a non-finite start of the first restart is a ``ValueError``."""
        v0 = self.full[self.free].copy()
        total0, g0 = self.evaluate_raw(v0)
        what = self.guard.describe(total0, self.last[2], g0)
        if what is not None and restart == 0:
            raise ValueError(f"the objective at in_x is not finite ({what}): nothing to optimise from; "
                             "check the loss and in_x")
        if what is not None:  # a refreshed batch: keep the map reached so far
            self.guard.record(self.iteration, f"at the start of restart {restart}, {what}")
            return False
        self.report.start(self.iteration, self.snapshot(v0), total0, self.last[2], restart)
        self.accepted.update(v=v0, f=total0, g=g0)
        return True

    def minimise(self, restart):
        """Run scipy's L-BFGS-B from the accepted point. False when interrupted (Ctrl-C): ``full``
        then holds the last accepted map."""

        def callback(intermediate_result):
            v, f = intermediate_result.x, float(intermediate_result.fun)
            if self.last is not None and np.array_equal(self.last[0], v):
                per_loss, g = self.last[2], self.last[3]
            else:  # scipy evaluated elsewhere since: recompute the accepted point
                f, g = self.evaluate(v)
                per_loss = self.last[2]
            self.iteration += 1
            self.accepted.update(v=v.copy(), f=f, g=g)
            self.report.step(self.iteration, self.snapshot(v), f, per_loss, restart)

        try:
            result = scipy.optimize.minimize(self.evaluate, self.accepted["v"], jac=True, method="L-BFGS-B",
                                             callback=callback, options=self.options)
        except KeyboardInterrupt:  # Ctrl-C: keep what was reached so far
            self.full[self.free] = self.accepted["v"]
            self.report.interrupted(self.iteration)
            return False
        self.result = result
        # L-BFGS-B may end on an evaluation that failed its line search: keep the last accepted point.
        if np.isfinite(result.fun) and result.fun <= self.accepted["f"]:
            self.full[self.free] = result.x
            self.accepted["f"] = float(result.fun)
        else:
            self.full[self.free] = self.accepted["v"]
        return True
