"""The scattering-covariance operator (``funct`` in the reference library)."""

import functools
import numbers

import numpy as np

from foscat_core._validation import check_dtype_name, check_kernel_size, check_nside, check_positive_int
from foscat_core.backends import resolve_backend
from foscat_core.ordering import check_nest
from foscat_core.stencils import GAUGE_TYPES

from . import edge
from .compat import BackendCompat
from .compute import build_plan, normalise, scattering_coefficients
from .distance import reduce_distance
from .pyramid import build_levels, count_scales, mask_pyramid
from .settings import OperatorSettings
from .statistics import ScatteringStatistics
from .wavelets import OCTAVE_CARRIER_FREQUENCY, check_lambda, check_xi, conv_kernel

NORMS = (None, "self", "auto")


class ScatteringCovariance:
    """Scattering-covariance statistics (S0, S1, S2, S3, S3P, S4) of HEALPix maps (NESTED or RING).

    Maps are convolved with complex Morlet wavelets (see :mod:`foscat_core.scattering.wavelets`)
    on the oriented K x K stencil of every cell. Scale ``j + 1`` is reached by smoothing with the
    Gaussian kernel and a mean ``down`` to ``nside / 2**(j+1)``; the same kernels applied there
    are the wavelets dilated by ``2**(j+1)``. Complex filtering is done as real convolutions
    (real parts, imaginary parts and the smoother are the output channels of one ``conv`` call),
    so every backend computes the same numbers and autograd needs nothing special.

    Parameters
    ----------
    KERNELSZ : int
        Odd stencil side K (P = K*K taps).
    NORIENT : int
        Number of wavelet orientations, ``theta_k = k * pi / NORIENT``.
    LAMBDA : float
        Wavelet width factor (Gaussian envelope ``sigma = LAMBDA * (K // 2) / 2`` pixels).
    XI : float, optional
        Carrier frequency of the wavelets in radians per pixel, in ``(0, pi]``. Default
        :data:`~foscat_core.scattering.wavelets.OCTAVE_CARRIER_FREQUENCY` (``0.6 pi``): scale 0 is
        centred on the finest multipole octave ``l = nside .. 2 nside`` (and scale ``j`` near
        ``nside / 2**j``), so a synthesis reproduces the power of every octave.
        ``XI=0.75 * np.pi`` gives the statistics of earlier versions (and the carrier of the library
        we are modelled on), whose scales leave that octave between scales 0 and 1: a synthesis
        keeps the power its starting map had there (white noise: 15-27% short at nside 64).
    JmaxDelta : int
        Scales dropped from the largest number the domain allows.
    nstep_max : int
        Upper bound on the number of scales.
    all_type : {"float64", "float32"}
        Floating type of the computation (inputs given as host data are converted to it).
    backend : str or Backend, optional
        Default: the one chosen with :func:`foscat_core.set_backend`.
    gauge_type : {"phi", "cosmo"}
        Stencil orientation gauge (see :class:`foscat_core.SphericalStencil`).
    nside : int, optional
        The operator's domain: :meth:`eval` uses it when it is given no grid of its own, and refuses
        maps on another domain. Default: none, every ``eval`` takes the domain of its maps.
    cell_ids : array_like of int, shape (N,), optional
        Ids (in the ``nest`` ordering) of a regional domain; needs ``nside``. ``None``: full sky.
    nest : bool
        healpy's meaning: the ordering of ids and of the cell axis of maps, masks and
        ``cell_ids`` (True: NESTED, False: RING); :meth:`eval`'s default.

    Attributes
    ----------
    backend : BackendCompat
        The backend, with the reference-style ``bk_mean``, ``bk_sum``, ``bk_abs``, ``bk_square``,
        ``bk_sqrt``, ``bk_reshape``, ``bk_cast`` helpers.

    Examples
    --------
    >>> import numpy as np
    >>> op = ScatteringCovariance(KERNELSZ=3, NORIENT=2, backend="numpy")
    >>> st = op.eval(np.random.default_rng(0).normal(size=48))
    >>> st.S1.shape, st.S3.shape, st.S4.shape
    ((1, 1, 2, 2), (1, 1, 3, 2, 2, 2), (1, 1, 4, 2, 2, 2, 2))

    A RING map (healpy's default ordering) gives the statistics of the same map in NESTED order:

    >>> import healpy as hp
    >>> ring = hp.reorder(np.random.default_rng(1).normal(size=192), n2r=True)
    >>> a = ScatteringCovariance(KERNELSZ=3, NORIENT=2, nest=False, backend="numpy").eval(ring)
    >>> b = op.eval(hp.reorder(ring, r2n=True))
    >>> bool(np.allclose(a.S4, b.S4)), a.settings["nest"]
    (True, False)
    """

    def __init__(self, KERNELSZ=5, NORIENT=4, LAMBDA=1.2, JmaxDelta=0, nstep_max=20, all_type="float64", backend=None,
                 gauge_type="phi", nside=None, cell_ids=None, nest=True, XI=None):
        self.KERNELSZ = check_kernel_size(KERNELSZ, "KERNELSZ")
        self.NORIENT = check_positive_int(NORIENT, "NORIENT")
        self.LAMBDA = check_lambda(LAMBDA)
        self.XI = OCTAVE_CARRIER_FREQUENCY if XI is None else check_xi(XI)
        if isinstance(JmaxDelta, bool) or not isinstance(JmaxDelta, numbers.Integral) or JmaxDelta < 0:
            raise ValueError(f"JmaxDelta must be a non-negative integer, got {JmaxDelta!r}")
        self.JmaxDelta = int(JmaxDelta)
        self.nstep_max = check_positive_int(nstep_max, "nstep_max")
        self.all_type = check_dtype_name(all_type, "all_type")
        self._bk = resolve_backend(backend.raw if isinstance(backend, BackendCompat) else backend)
        self.backend = BackendCompat(self._bk, self.all_type)
        if gauge_type not in GAUGE_TYPES:
            raise ValueError(f"gauge_type must be one of {GAUGE_TYPES}, got {gauge_type!r}")
        self.gauge_type = gauge_type
        self._kernel_host = conv_kernel(self.KERNELSZ, self.NORIENT, self.LAMBDA, self.XI)
        self._pyramids = {}
        self._compiled_plans = {}  # id(plan) -> its compiled compute function (plans live in _pyramids)
        self._domains = {}
        self._norm_ref = None
        self.nest = check_nest(nest)
        if cell_ids is not None and nside is None:
            raise ValueError("nside is required when cell_ids is given")
        self.nside = None if nside is None else check_nside(nside)
        self.cell_ids = None if cell_ids is None else np.asarray(cell_ids, dtype=np.int64)
        self._own = None if nside is None else self._domain_of(self.nside, self.cell_ids, self.nest)

    def __repr__(self):
        return (f"ScatteringCovariance(KERNELSZ={self.KERNELSZ}, NORIENT={self.NORIENT}, LAMBDA={self.LAMBDA}, XI={self.XI:.6g}, "
                f"JmaxDelta={self.JmaxDelta}, nstep_max={self.nstep_max}, all_type={self.all_type!r}, "
                f"backend={self._bk.name!r}{'' if self.nest else ', nest=False'}"
                f"{'' if self.nside is None else f', nside={self.nside}'}"
                f"{'' if self.cell_ids is None else f', cell_ids=<{self.cell_ids.size} cells>'})")

    # --- per-domain data, built once --------------------------------------------------------
    def _pyramid(self, nside, cell_ids, key=None):
        """The cached entry of a domain: ``{"allowed": int, "levels": list of Level, "plans": {J: ScalePlan}}``.

        ``key``: the domain's ``CellLayout.pyramid_key`` when the caller has one (a traced call
        can not read the bytes of the ids), otherwise made from ``cell_ids``."""
        if key is None:
            key = (nside, None if cell_ids is None else np.asarray(cell_ids, dtype=np.int64).tobytes())
        entry = self._pyramids.get(key)
        if entry is None:
            allowed = count_scales(nside, cell_ids)
            entry = {"allowed": allowed, "levels": build_levels(nside, cell_ids, allowed), "plans": {}}
            self._pyramids[key] = entry
        return entry

    def _plan(self, domain, n_scales):
        """The :class:`~foscat_core.scattering.compute.ScalePlan` of ``n_scales`` scales of ``domain``,
        built on its first use and never changed (a traced call only reads it)."""
        entry = self._pyramid(domain.nside, domain.cell_ids, domain.pyramid_key)
        plan = entry["plans"].get(n_scales)
        if plan is None:
            plan = entry["plans"][n_scales] = build_plan(self._bk, self.all_type, entry["levels"][:n_scales],
                                                         self._kernel_host, self.NORIENT, self.KERNELSZ,
                                                         self.gauge_type)
        return plan

    def clean_norm(self):
        """Forget the reference stored by ``norm="auto"``."""
        self._norm_ref = None

    reset_norm = clean_norm

    def max_scales(self, nside, cell_ids=None, key=None):
        """The default number of scales for a domain: what it allows minus JmaxDelta, capped by nstep_max."""
        allowed = self._pyramid(nside, cell_ids, key)["allowed"]
        return max(1, min(allowed - self.JmaxDelta, self.nstep_max)), allowed

    # --- the edge: users' maps and grids ----------------------------------------------------
    def _domain_of(self, nside, user_ids, nest):
        """The cached :class:`~foscat_core.scattering.edge.CellLayout` of ids in the ``nest`` ordering."""
        key = (nside, nest, None if user_ids is None else np.asarray(user_ids).tobytes())
        dom = self._domains.get(key)
        if dom is None:
            dom = self._domains[key] = edge.with_backend(edge.build_domain(nside, user_ids, nest), self._bk)
        return dom

    def _resolve(self, n, nside, cell_ids, nest, from_grid):
        """The :class:`~foscat_core.scattering.edge.CellLayout` of maps of ``n`` cells: the grid of a
        DataArray, the eval arguments or the operator's domain."""
        if not from_grid and nside is None and cell_ids is None and self._own is not None:
            if nest is not None and nest != self.nest:
                raise ValueError(f"nest={nest} conflicts with the operator's domain (nest={self.nest}); pass "
                                 "cell_ids and nside in that ordering")
            dom = self._own
        else:
            nest = self.nest if nest is None else check_nest(nest)
            if cell_ids is None:
                dom = self._domain_of(edge.full_sky_nside(n, nside), None, nest)
            else:
                if nside is None:
                    raise ValueError("nside is required when cell_ids is given (the map may be at any resolution)")
                edge.check_ids_shape(cell_ids, n)
                dom = self._domain_of(check_nside(nside), cell_ids, nest)
            own = self._own
            if own is not None and (own.nside, own.cells_hash) != (dom.nside, dom.cells_hash):
                raise ValueError(f"x is on a domain (nside {dom.nside}, {dom.n_cells} cells) other than the "
                                 f"operator's (nside {own.nside}, {own.n_cells} cells)")
        if dom.n_cells != n:
            raise ValueError(f"x must have {dom.n_cells} cells on its last axis (the operator's domain), got {n}")
        return dom

    # --- the operator ---------------------------------------------------------------------
    def eval(self, x, y=None, mask=None, norm=None, cell_ids=None, nside=None, Jmax=None, nest=None):
        """Scattering covariance of ``x`` (auto) or of ``x`` and ``y`` (cross).

        Parameters
        ----------
        x : array, shape (B, N) or (N,), or xarray.DataArray
            Maps in the ``nest`` ordering (a 1-D map is a batch of one, B = 1): a full sky (nside
            inferred from N unless given), the cells ``cell_ids`` at ``nside``, or the operator's
            domain. Host data is converted to ``all_type``; a framework tensor must already be of
            the operator's backend and dtype (gradients flow through it). Real values (complex is a
            ``TypeError``) and at least one map (B >= 1). Every cell must be finite:
            NaN or inf is a ``ValueError`` (give missing cells a finite value and weight 0 in
            ``mask``). A DataArray (xdggs convention) brings its grid (nside, ``cell_ids``,
            ordering), which must be the operator's domain when it has one; its cell dimension
            moves last and its other dimensions, flattened in C order, are the batch.
        y : array, same shape as x, optional
            Second map for the cross statistics (adds S3P); a DataArray must be on x's grid.
        mask : array, shape (M, N) or (N,), optional
            Non-negative finite weights, cell axis like x's: every mean over cells is a weighted
            mean, one per mask row. The mask follows the maps down the scales (mean ``down``).
            A DataArray must be on x's grid (its other dimensions are the rows).
        norm : {None, "self", "auto"}
            Divide S3 by ``sqrt(S2[j2,k2] S2[j3,k3])`` and S4 by ``sqrt(S2[j1,k1] S2[j2,k2])``
            (for cross statistics, the S2 of the map each index belongs to: S3 uses y's for j2 and
            x's for j3, S3P the reverse, S4 x's for j1 and y's for j2). ``"self"``: the S2 of the
            maps being evaluated. ``"auto"``: the first call with ``"auto"`` stores its S2 (x's and
            y's, detached) on the operator and every later ``"auto"`` call divides by that stored reference (its
            batch axis must be 1 or match); :meth:`clean_norm` forgets it.
        cell_ids : array_like of int, shape (N,), optional
            Ids of a regional map in the ``nest`` ordering, any order; needs ``nside``. Scales
            coarser than the first work on the parents present; at the domain border the stencil
            renormalises over the in-domain neighbours.
        nside : int, optional
        Jmax : int, optional
            Number of scales; default: as many as the domain allows (down to nside 1, stopping
            before a level with fewer than 12 cells), minus ``JmaxDelta``, capped by ``nstep_max``.
        nest : bool, optional
            Ordering of ``cell_ids`` and of the cell axis (healpy's meaning); default: the
            operator's. The statistics of a RING map equal those of the same map in NESTED order.

        Returns
        -------
        ScatteringStatistics
            See its docstring for every coefficient's shape; ``M = 1`` without mask. Its
            ``settings`` record this call (domain, ordering, scales, norm, mask).

        Notes
        -----
        ``eval`` may be traced (``jax.jit``, ``tf.function``, ``torch.compile``): the per-scale data
        of a domain is built once and only read, and the finite check of ``x`` and ``y`` becomes
        part of the graph, failing when it runs with the framework's error carrying the message.
        ``mask`` must then be host data (or a tensor holding values), and the first ``"auto"``
        call, which stores its reference, must be eager.
        """
        call = self._inputs(x, y, mask, norm, cell_ids, nside, Jmax, nest)
        plan = self._plan(call.domain, call.n_scales)
        if call.mask is None:
            weights = plan.uniform
        else:
            levels = self._pyramid(call.domain.nside, call.domain.cell_ids,
                                   call.domain.pyramid_key)["levels"][:call.n_scales]
            weights = [self._bk.asarray(w, dtype=self.all_type) for w in mask_pyramid(call.mask, levels)]
        raw = self._compiled(plan)(call.x, call.y, weights)
        return self._package(raw, plan, call)

    def _compiled(self, plan):
        """:func:`~foscat_core.scattering.compute.scattering_coefficients` of ``plan`` as the backend
        compiles it (``jax.jit`` on JAX: eagerly, each of its hundreds of small operations would
        be compiled on its own first use — about 15 s at nside 4; the function itself elsewhere)."""
        fn = self._compiled_plans.get(id(plan))
        if fn is None:
            fn = self._compiled_plans[id(plan)] = self._bk.compile(functools.partial(scattering_coefficients, self._bk, plan))
        return fn

    def _inputs(self, x, y, mask, norm, cell_ids, nside, Jmax, nest):
        """The checked :class:`~foscat_core.scattering.edge.EvalInputs` of an ``eval`` call."""
        edge.check_norm(norm, NORMS)
        x, nside, cell_ids, nest, grid = edge.read_grid(x, nside, cell_ids, nest)
        x = edge.maps(self._bk, x, "x", self.all_type)
        n = int(x.shape[1])
        dom = self._resolve(n, nside, cell_ids, nest, grid is not None)
        x, y = edge.field_maps(self._bk, x, y, dom, self.all_type)
        default_j, allowed = self.max_scales(dom.nside, dom.cell_ids, dom.pyramid_key)
        n_scales = edge.check_n_scales(Jmax, default_j, allowed)
        m, mask_hash = edge.mask_weights(self._bk, mask, dom, n)
        return edge.EvalInputs(x, y, dom, n_scales, m, mask_hash, norm)

    def _package(self, raw, plan, call):
        """The :class:`ScatteringStatistics` of :func:`~foscat_core.scattering.compute.scattering_coefficients`'
        output, normalised as ``call.norm`` asks."""
        xp, norm, cross = self._bk.xp, call.norm, call.y is not None
        s3, s3p, s4 = raw["S3"], raw.get("S3P"), raw["S4"]
        if norm is not None:
            s2x = raw["S2x"]
            s2y = raw.get("S2y", s2x)
            if norm == "auto":
                s2x, s2y = self._auto_reference(s2x, s2y)
            s3, s3p, s4 = normalise(self._bk, plan, s3, s3p, s4, s2x, s2y)
        coeffs = {"S0": raw["S0"], "S1": raw["S1"], "S2": _pair(xp, raw["S2"]), "S3": _pair(xp, s3), "S4": _pair(xp, s4)}
        if s3p is not None:
            coeffs["S3P"] = _pair(xp, s3p)
        complex_names = {"S3", "S3P", "S4"} | ({"S2"} if cross else set())
        dom = call.domain
        settings = OperatorSettings(dom.nside, dom.n_cells, dom.cells_hash, dom.nest, self.KERNELSZ, self.NORIENT,
                                    self.LAMBDA, self.gauge_type, call.n_scales, norm, cross,
                                    0 if call.mask is None else int(call.mask.shape[0]), call.mask_hash, self.XI)
        return ScatteringStatistics(coeffs, complex_names, self.backend, plan.j2_j3, plan.j1_j2_j3, cross=cross,
                                    norm=norm, settings=settings)

    def _auto_reference(self, s2x, s2y):
        bk = self._bk
        if self._norm_ref is None:
            if bk.is_traced(s2x):
                raise ValueError("norm='auto' stores the S2 of its first call as the reference, which needs values: "
                                 "make that first call eagerly (outside jax.jit / tf.function), then trace")
            self._norm_ref = tuple(bk.to_numpy(s) for s in (s2x, s2y))
        ref_x, ref_y = self._norm_ref
        for ref, cur in ((ref_x, s2x), (ref_y, s2y)):
            rs, cs = ref.shape, tuple(int(d) for d in cur.shape)
            if rs[1:] != cs[1:] or rs[0] not in (1, cs[0]):
                raise ValueError(f"norm='auto': the stored reference S2 has shape {rs}, incompatible with this "
                                 f"call's {cs} (other scales, mask or batch); call clean_norm() to reset it")
        return bk.asarray(ref_x, dtype=self.all_type), bk.asarray(ref_y, dtype=self.all_type)

    # --- reference-style helpers --------------------------------------------------------------
    def reduce_mean_batch(self, stats):
        """``stats.reduce_mean_batch()``: batch mean summed over coefficients (a backend scalar)."""
        return stats.reduce_mean_batch()

    def reduce_distance(self, stat, ref, sigma=None):
        """Mean over all coefficients of ``|stat - ref|**2 / sigma**2`` (a differentiable backend
        scalar); see :func:`~foscat_core.scattering.distance.reduce_distance`.

        >>> import numpy as np
        >>> op = funct(KERNELSZ=3, NORIENT=2, backend="numpy")
        >>> st = op.eval(np.random.default_rng(0).normal(size=(3, 48)))
        >>> round(float(op.reduce_distance(st, st.mean_batch(), st.std_batch())), 6)
        1.0
        """
        return reduce_distance(stat, ref, sigma)

    def reduce_sum(self, stats):
        return stats.reduce_sum()

    def reduce_mean(self, stats):
        return stats.reduce_mean()

    def square(self, stats):
        """``stats ** 2`` (``|z|**2`` for complex coefficients)."""
        return stats**2

    def sqrt(self, stats):
        return stats**0.5


def _pair(xp, v):
    """A real array as is, a (re, im) tuple stacked on a trailing axis of size 2."""
    return xp.stack(list(v), axis=-1) if isinstance(v, tuple) else v


funct = ScatteringCovariance
