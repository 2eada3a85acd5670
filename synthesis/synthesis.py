"""L-BFGS-B synthesis of maps: scipy drives a float64 host vector, the backend's autograd gives the gradient."""

import warnings

import numpy as np

from ._checks import dataarray_start, free_entries, host_array, positive_float
from ._distributed import distribution_of, mask_share
from ._lbfgs import LbfgsLoop
from ._run_report import RunReport
from .loss import Loss

from foscat_core._validation import check_positive_int
from foscat_core.backends import NoGradientError
from foscat_core.backends.registry import AUTOGRAD_NAMES

SYNTHESIS_BACKENDS = AUTOGRAD_NAMES  # the backends with automatic differentiation


class Synthesis:
    """Minimise the sum of :class:`Loss` terms over a map with scipy's L-BFGS-B.

    Parameters
    ----------
    loss_list : Loss or list of Loss
        The terms of the objective; they must share one backend, and that backend must have
        automatic differentiation (``"torch"``, ``"tensorflow"`` or ``"jax"``; the NumPy backend has none).
        Terms may use different dtypes: each gets ``x`` in its own dtype.
    verbose : bool
        Show a tqdm progress bar and a loss line every ``EVAL_FREQUENCY`` iterations
        (overridable per :meth:`run`).

    Other keyword arguments of the reference library's constructor (Adam settings such as
    ``eta``, ``beta1``...) are accepted and ignored: the optimiser is L-BFGS-B.

    Examples
    --------
    >>> import numpy as np
    >>> def to_three(x, scat_op, args):
    ...     return scat_op.backend.xp.sum((x - 3.0) ** 2)
    >>> loss = Loss(to_three, None, backend="torch")
    >>> out = Synthesis([loss], verbose=False).run(np.zeros(4), NUM_EPOCHS=20)
    >>> bool(np.allclose(out, 3.0))
    True
    """

    def __init__(self, loss_list, verbose=True, **ignored_adam_settings):
        if isinstance(loss_list, Loss):
            loss_list = [loss_list]
        try:
            losses = list(loss_list)
        except TypeError as err:
            raise TypeError(f"loss_list must be a list of Loss objects, got {type(loss_list).__name__}") from err
        if not losses:
            raise ValueError("loss_list must hold at least one Loss")
        for k, loss in enumerate(losses):
            if not isinstance(loss, Loss):
                raise TypeError(f"loss_list[{k}] must be a Loss, got {type(loss).__name__}")
        names = {loss.backend.name for loss in losses}
        if len(names) > 1 or len({id(loss.backend) for loss in losses}) > 1:
            found = ", ".join(f"{loss.name!r}: {loss.backend!r}" for loss in losses)
            raise ValueError(f"all losses must share one backend (and device), got {found}")
        self.backend = losses[0].backend
        if not self.backend.has_autograd:
            raise NotImplementedError(
                f"the {self.backend.name!r} backend has no automatic differentiation, so it cannot "
                f"synthesise; build the losses on a backend with autograd ({', '.join(SYNTHESIS_BACKENDS)})"
            )
        self.loss_class = losses
        self.verbose = bool(verbose)
        self.history = np.zeros(0)
        self.info = []
        self.track = []
        self.result = None
        self._graphs = {}  # dtype -> compiled value-and-gradient (False: run eagerly)

    # --- one evaluation ------------------------------------------------------------------------
    def _scalar(self, loss, value):
        """Check a loss returned a backend scalar tensor; give it shape ()."""
        bk = self.backend
        if not bk.is_native(value):
            raise TypeError(
                f"loss {loss.name!r} returned {type(value).__name__}, not a {bk.name} tensor: the loss must "
                "stay in backend operations on x (converting x to NumPy cuts the gradient)"
            )
        if int(np.prod([int(s) for s in value.shape])) != 1:
            raise ValueError(f"loss {loss.name!r} must return a scalar, got shape {tuple(value.shape)}")
        return bk.xp.reshape(value, ())

    def _value_and_grad(self, full, shape):
        """Total loss, per-loss values and the gradient (flat float64) at the host map ``full``
        (flat), handed to the losses as a backend tensor of ``shape``."""
        bk = self.backend
        total, per_loss, grad = 0.0, [None] * len(self.loss_class), np.zeros(full.size)
        groups = {}
        for k, loss in enumerate(self.loss_class):
            groups.setdefault(loss.dtype, []).append(k)
        for dtype, members in groups.items():
            values = {}

            def objective(xt, members=members, values=values):
                out = None
                for k in members:
                    loss = self.loss_class[k]
                    v = self._scalar(loss, loss.eval(xt))
                    values[k] = v
                    out = v if out is None else out + v
                return out

            xt = bk.asarray(full.reshape(shape).copy(), dtype=dtype)
            compiled = self._compiled(dtype, members, xt)
            if compiled is not None:
                value, per_member, g = compiled
                values.update(zip(members, per_member))
            else:
                try:
                    value, g = bk.value_and_grad(objective, xt)
                except NoGradientError:
                    names = ", ".join(repr(self.loss_class[k].name) for k in members)
                    raise ValueError(f"the losses {names} do not depend on x through {bk.name} operations, so "
                                     "they have no gradient; keep the computation in backend ops on x") from None
            failed = self._graphs.pop(("failed", dtype), None)
            if failed is not None:
                reason = (str(failed).strip().splitlines() or [""])[0][:200]
                warnings.warn(f"the {dtype} losses could not be compiled by {bk.name} ({type(failed).__name__}: "
                              f"{reason}); they run eagerly (slower)", RuntimeWarning, stacklevel=3)
            for k in members:
                per_loss[k] = float(bk.to_numpy(values[k]))
            total += float(bk.to_numpy(value))
            grad += bk.to_numpy(g).astype(np.float64).ravel()
        return total, per_loss, grad

    # --- the evaluation compiled by the backend ----------------------------------------------------
    def _compiled(self, dtype, members, xt):
        """``(total, per-member values, gradient)`` from the losses of ``members`` compiled once by
        the backend (:meth:`~foscat_core.backends.Backend.compile_value_and_grad`: a ``tf.function``
        graph, ``jax.jit``; torch runs eagerly), or ``None`` when they cannot be compiled: then
        the caller runs them eagerly, which also raises the usual errors of a broken loss.

        The function is traced on the first evaluation of a run (losses run their Python code
        then, not at every evaluation) and again after a batch refresh; a loss that leaves backend
        operations (``x.numpy()``...) falls back to eager execution with a one-line warning.
        """
        state = self._graphs.get(dtype)
        if state is False:
            return None
        if state is None:

            def objective(x):
                values = [self._scalar(self.loss_class[k], self.loss_class[k].eval(x)) for k in members]
                total = values[0]
                for v in values[1:]:
                    total = total + v
                return total, values

            state = self._graphs[dtype] = self.backend.compile_value_and_grad(objective)
        try:
            return state(xt)
        except Exception as err:  # noqa: BLE001 - any tracing failure: run eagerly instead
            self._graphs[dtype] = False
            if not isinstance(err, NoGradientError):
                self._graphs[("failed", dtype)] = err
            return None

    # --- the optimisation ------------------------------------------------------------------------
    def run(self, in_x, NUM_EPOCHS=100, EVAL_FREQUENCY=100, factr=10.0, NUM_STEP_BIAS=1, batchsz=1, totalsz=1,
            grd_mask=None, idx_grd=None, KEEP_TRACK=None, MESSAGE="", axis=0, verbose=None, options=None,
            distributed=None):
        """Synthesise a map: L-BFGS-B from ``in_x`` on the sum of the losses.

        Parameters
        ----------
        in_x : array_like or xarray.DataArray, shape (N,) or (B, C, N) or any shape the losses expect
            Starting map (NumPy data or a tensor; finite real numbers). The losses receive a
            backend tensor of this shape. A DataArray (xdggs convention, a ``cell_ids``
            coordinate) is handed to the losses, ``grd_mask`` and ``KEEP_TRACK`` with its cell
            dim moved last, and the answer comes back as a DataArray like it.
        NUM_EPOCHS : int
            Maximum L-BFGS-B iterations per restart (it may stop earlier on ``factr``).
        EVAL_FREQUENCY : int
            A loss line is printed every this many iterations (when verbose), and ``KEEP_TRACK``
            and ``info_callback`` losses are polled.
        factr : float
            Stopping tolerance in units of machine epsilon, as in the Fortran L-BFGS-B: scipy's
            ``ftol = factr * np.finfo(float).eps``; the run stops when
            ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``.
        NUM_STEP_BIAS : int
            Number of L-BFGS-B restarts (each up to ``NUM_EPOCHS`` iterations, from the previous
            result, with a fresh curvature memory). Before every restart after the first, each
            batched loss's ``batch_update(batch_data)`` refreshes its batch.
        batchsz, totalsz : int
            Accepted for compatibility with the reference library's signature and checked to be
            positive; batches are driven by :class:`Loss` (``batch`` / ``batch_update``).
        grd_mask : array_like or xarray.DataArray, shape of ``in_x``, optional
            Multiplies the gradient (typically 0/1 or booleans, True = free): entries where it is
            0 (False) are frozen and come back exactly as in ``in_x``.
        idx_grd : array_like of int, shape (M,), optional
            Only these cells (indices along the last axis of ``in_x``) move; combined with
            ``grd_mask`` when both are given.
        KEEP_TRACK : callable or bool, optional
            ``KEEP_TRACK(x)`` is called with the current map (NumPy, shape of ``in_x``) at
            iteration 0 and every ``EVAL_FREQUENCY`` iterations; its results are kept
            (:meth:`get_track`). ``True`` keeps copies of the map itself.
        MESSAGE : str
            Prefix of the progress bar and of the loss lines.
        axis : int
            Accepted for compatibility; checked to be an axis of ``in_x``. The whole map is one
            optimisation vector.
        verbose : bool, optional
            Overrides the constructor's ``verbose`` for this run.
        options : dict, optional
            Extra scipy L-BFGS-B options. Defaults: ``maxcor=10``, ``gtol=0`` (no stop on the
            projected gradient: synthesis losses get very small), ``maxls=20``,
            ``maxfun=max(15000, 4 * NUM_EPOCHS)``.
        distributed : bool, optional
            Under several processes (an initialised ``torch.distributed`` process group, e.g.
            ``torchrun``), each given the same ``in_x``: ``True`` splits the maps along the
            leading axis into contiguous shares, one per rank (``B >= world size``), each rank
            optimises its share (losses, ``grd_mask``, ``KEEP_TRACK`` and the history see that
            share; rank 0 alone prints), and the shares are gathered so that every rank returns
            the whole batch. This is the single-process answer when the loss is a sum (or mean)
            of per-map terms, each map then reaching its own minimum. ``None`` (default) splits
            when there are several processes and ``in_x`` is a batch (B, C, N) (3 or more axes);
            ``False`` never splits (every rank optimises all of ``in_x``).

        Returns
        -------
        numpy.ndarray or xarray.DataArray, shape of ``in_x``
            The synthesised map, in ``in_x``'s floating dtype (float64 for integer input); a
            DataArray with ``in_x``'s dims, coordinates and attributes for a DataArray ``in_x``. A
            ``KeyboardInterrupt`` (Ctrl-C) during the optimisation stops it and returns the last
            accepted map. The map returned is always one where every loss and the gradient
            were finite (see Warns).

        Raises
        ------
        TypeError, ValueError
            Bad ``in_x`` (not real numbers, empty, NaN or infinite), bad arguments, a loss that
            returns something other than a backend scalar, a loss with no gradient, or a loss or
            gradient that is NaN or infinite at ``in_x`` (the message names which).

        Warns
        -----
        RuntimeWarning
            When a loss or the gradient was NaN or infinite at some point L-BFGS-B tried: that
            point was rejected (given a large finite loss, so the line search backed off) and the
            run went on from finite points; the warning names the first iteration and loss
            concerned. The same when a refreshed batch makes the start of a restart non-finite:
            the run stops there and returns the map reached so far.
        """
        in_x, grd_mask, wrap = dataarray_start(in_x, grd_mask)
        x0 = host_array(in_x, "in_x")
        dist = distribution_of(self.backend, x0.shape, distributed)
        if dist is not None:
            part = dist.shard(len(x0))
            grd_mask = None if grd_mask is None else mask_share(grd_mask, x0.shape, part)
            x0 = x0[part]
        NUM_EPOCHS = check_positive_int(NUM_EPOCHS, "NUM_EPOCHS")
        EVAL_FREQUENCY = check_positive_int(EVAL_FREQUENCY, "EVAL_FREQUENCY")
        NUM_STEP_BIAS = check_positive_int(NUM_STEP_BIAS, "NUM_STEP_BIAS")
        check_positive_int(batchsz, "batchsz")
        check_positive_int(totalsz, "totalsz")
        ftol = positive_float(factr, "factr") * np.finfo(np.float64).eps
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -max(x0.ndim, 1) <= axis < max(x0.ndim, 1):
            raise ValueError(f"axis must be an axis of in_x (ndim {x0.ndim}), got {axis!r}")
        if KEEP_TRACK is not None and not callable(KEEP_TRACK) and not isinstance(KEEP_TRACK, (bool, np.bool_)):
            raise TypeError(f"KEEP_TRACK must be a callable, a bool or None, got {type(KEEP_TRACK).__name__}")
        if not isinstance(MESSAGE, str):
            raise TypeError(f"MESSAGE must be a string, got {type(MESSAGE).__name__}")
        verbose = (self.verbose if verbose is None else bool(verbose)) and (dist is None or dist.is_main)
        free, weight = free_entries(x0.shape, grd_mask, idx_grd)
        opts = {"maxcor": 10, "gtol": 0.0, "maxls": 20, "maxfun": max(15000, 4 * NUM_EPOCHS)}
        opts.update(options or {})
        opts.update(maxiter=NUM_EPOCHS, ftol=ftol)

        shape = x0.shape
        full = x0.astype(np.float64).ravel()
        self.result = None
        self._graphs = {}  # traced again for this run: the losses may have changed since the last one
        report = RunReport(self.loss_class, self.backend, NUM_EPOCHS * NUM_STEP_BIAS, EVAL_FREQUENCY, KEEP_TRACK,
                           MESSAGE, verbose)
        self.info, self.track = report.info, report.track
        loop = LbfgsLoop(lambda flat: self._value_and_grad(flat, shape), full, free, weight,
                         [loss.name for loss in self.loss_class], report, opts, shape)
        try:
            self._restarts(loop, report, NUM_EPOCHS, NUM_STEP_BIAS)
            report.final(loop.iteration, self.result)
        finally:
            self.history = report.close()
        loop.guard.warn(loop.accepted["f"])
        out_dtype = x0.dtype if np.issubdtype(x0.dtype, np.floating) else np.float64
        out = full.reshape(shape).astype(out_dtype)
        if dist is not None:
            out = np.concatenate(dist.gather_host(out), axis=0)
        return out if wrap is None else wrap(out)

    def _restarts(self, loop, report, num_epochs, num_restarts):
        """The ``NUM_STEP_BIAS`` L-BFGS-B restarts, each after refreshing the batched losses."""
        for restart in range(num_restarts):
            for loss in self.loss_class:
                if loss.batch_update is not None and (restart > 0 or loss.batch is None):
                    loss.refresh_batch()
            if restart > 0 and any(loss.batched for loss in self.loss_class):
                self._graphs = {}  # a traced graph holds the previous batch
            if not loop.start(restart):
                break
            if not loop.minimise(restart):
                break
            self.result = loop.result
            report.restart_done(num_epochs * (restart + 1))  # iterations skipped by an early stop

    def get_history(self):
        """Loss of the latest :meth:`run`, float64 array: for each restart, the starting loss then one value
        per L-BFGS-B iteration (the accepted point's total loss)."""
        return self.history.copy()

    def get_info(self):
        """``(iteration, loss index, info)`` tuples collected from ``info_callback`` losses at each report."""
        return list(self.info)

    def get_track(self):
        """What ``KEEP_TRACK`` returned (or the maps kept) at iteration 0 and every ``EVAL_FREQUENCY``."""
        return list(self.track)
