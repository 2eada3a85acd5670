"""What a synthesis run shows and keeps: the progress bar, the loss history, ``KEEP_TRACK`` snapshots,
``info_callback`` values and the loss lines."""

import time

import numpy as np
from tqdm.auto import tqdm


class RunReport:
    """The reporting side of one :meth:`Synthesis.run <foscat_core.synthesis.Synthesis.run>`.

    Parameters
    ----------
    losses : list of Loss
        The terms of the objective (their names label the loss lines; those with ``info`` are
        asked for their info at each report).
    backend : Backend
        Where the maps handed to ``info_callback`` losses go.
    total_steps : int
        Length of the progress bar (``NUM_EPOCHS * NUM_STEP_BIAS``).
    eval_frequency : int
        A report (track, info, loss line) every this many iterations.
    keep_track : callable, bool or None
        ``KEEP_TRACK`` of :meth:`Synthesis.run`.
    message : str
        Prefix of the bar and of the lines.
    verbose : bool

    Attributes
    ----------
    history : list of float
        The starting loss of each restart, then the accepted loss of every iteration.
    info : list of (int, int, object)
        ``(iteration, loss index, info)`` of the ``info_callback`` losses.
    track : list
        What ``keep_track`` returned (or the maps), at each report.
    """

    def __init__(self, losses, backend, total_steps, eval_frequency, keep_track, message, verbose):
        self.losses = losses
        self.backend = backend
        self.eval_frequency = eval_frequency
        self.keep_track = keep_track
        self.message = message
        self.verbose = verbose
        self.history, self.info, self.track = [], [], []
        self.bar = tqdm(total=total_steps, desc=message.strip() or "synthesis", disable=not verbose, leave=False)
        self.t_start = time.perf_counter()

    def start(self, iteration, snapshot, total, per_loss, restart):
        """The finite starting point of a restart: recorded, and reported when due."""
        self.history.append(total)
        if iteration % self.eval_frequency == 0:
            self.report(iteration, snapshot, total, per_loss, restart)

    def step(self, iteration, snapshot, total, per_loss, restart):
        """An accepted L-BFGS-B iteration; ``snapshot()`` gives the map (host, shape of ``in_x``)."""
        self.history.append(total)
        self.bar.update(1)
        if self.verbose:
            self.bar.set_postfix(loss=f"{total:.4e}")
        if iteration % self.eval_frequency == 0:
            self.report(iteration, snapshot, total, per_loss, restart)

    def report(self, iteration, snapshot, total, per_loss, restart):
        """Keep the track and the infos at this map; print the loss line when verbose."""
        if self.keep_track is not None and self.keep_track is not False:
            current = snapshot()
            self.track.append(current if self.keep_track is True else self.keep_track(current))
        for k, loss in enumerate(self.losses):
            if loss.info:
                xt = self.backend.asarray(snapshot(), dtype=loss.dtype)
                self.info.append((iteration, k, loss.eval(xt, return_all=True)[1]))
        if self.verbose:
            terms = " ".join(f"{loss.name}={val:.4e}" for loss, val in zip(self.losses, per_loss))
            rate = (time.perf_counter() - self.t_start) / max(iteration, 1)
            tqdm.write(f"{self.message}Itt {iteration:6d} (restart {restart}) L={total:.6e} [{terms}] "
                       f"{rate * 1e3:.1f} ms/it")

    def restart_done(self, steps_so_far):
        """Move the bar over the iterations an early stop skipped."""
        self.bar.update(steps_so_far - self.bar.n)

    def interrupted(self, iteration):
        tqdm.write(f"{self.message}interrupted at iteration {iteration}: returning the last accepted map")

    def final(self, iteration, result):
        """The closing line (verbose runs that reached scipy's answer)."""
        if self.verbose and result is not None:
            tqdm.write(f"{self.message}Final loss {self.history[-1]:.6e} after {iteration} iterations "
                       f"({time.perf_counter() - self.t_start:.2f} s; scipy: {result.message})")

    def close(self):
        """Close the bar; the history as a float64 array."""
        self.bar.close()
        return np.asarray(self.history, dtype=np.float64)
