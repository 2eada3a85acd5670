"""The scattering-covariance operator (``funct`` in the reference library)."""

import numbers

import numpy as np

from foscat_core._validation import check_dtype_name, check_kernel_size, check_nside, check_positive_int
from foscat_core.backends import resolve_backend
from foscat_core.ordering import check_nest
from foscat_core.stencil_geometry import GAUGE_TYPES

from . import edge
from .compat import BackendCompat
from .compute import assemble, scale_indices, scattering_scales
from .distance import reduce_distance
from .pyramid import build_levels, count_scales, level_filter, mask_pyramid
from .settings import OperatorSettings, hash_array
from .statistics import ScatteringStatistics
from .wavelets import check_lambda, conv_kernel

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
                 gauge_type="phi", nside=None, cell_ids=None, nest=True):
        self.KERNELSZ = check_kernel_size(KERNELSZ, "KERNELSZ")
        self.NORIENT = check_positive_int(NORIENT, "NORIENT")
        self.LAMBDA = check_lambda(LAMBDA)
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
        self._kernel_host = conv_kernel(self.KERNELSZ, self.NORIENT, self.LAMBDA)
        self._kernel_native = None
        self._pyramids = {}
        self._domains = {}
        self._norm_ref = None
        self.nest = check_nest(nest)
        if cell_ids is not None and nside is None:
            raise ValueError("nside is required when cell_ids is given")
        self.nside = None if nside is None else check_nside(nside)
        self.cell_ids = None if cell_ids is None else np.asarray(cell_ids, dtype=np.int64)
        self._own = None if nside is None else self._domain_of(self.nside, self.cell_ids, self.nest)

    def __repr__(self):
        return (f"ScatteringCovariance(KERNELSZ={self.KERNELSZ}, NORIENT={self.NORIENT}, LAMBDA={self.LAMBDA}, "
                f"JmaxDelta={self.JmaxDelta}, nstep_max={self.nstep_max}, all_type={self.all_type!r}, "
                f"backend={self._bk.name!r}{'' if self.nest else ', nest=False'}"
                f"{'' if self.nside is None else f', nside={self.nside}'}"
                f"{'' if self.cell_ids is None else f', cell_ids=<{self.cell_ids.size} cells>'})")

    # --- caches ---------------------------------------------------------------------------
    def _kernels(self):
        """(full bank with the smoother, wavelets only) as native arrays of shape (C, P)."""
        if self._kernel_native is None:
            k = self.NORIENT
            full = self._bk.asarray(self._kernel_host[0], dtype=self.all_type)
            wave = self._bk.asarray(self._kernel_host[0, :2 * k], dtype=self.all_type)
            self._kernel_native = (full, wave)
        return self._kernel_native

    def _pyramid(self, nside, cell_ids):
        """The cached entry of a domain: ``{"allowed": int, "levels": list of Level}``."""
        key = (nside, None if cell_ids is None else np.asarray(cell_ids, dtype=np.int64).tobytes())
        entry = self._pyramids.get(key)
        if entry is None:
            allowed = count_scales(nside, cell_ids)
            entry = {"allowed": allowed, "levels": build_levels(nside, cell_ids, allowed)}
            self._pyramids[key] = entry
        return entry

    def clean_norm(self):
        """Forget the reference stored by ``norm="auto"``."""
        self._norm_ref = None

    reset_norm = clean_norm

    def max_scales(self, nside, cell_ids=None):
        """The default number of scales for a domain: what it allows minus JmaxDelta, capped by nstep_max."""
        allowed = self._pyramid(nside, cell_ids)["allowed"]
        return max(1, min(allowed - self.JmaxDelta, self.nstep_max)), allowed

    # --- the edge: users' maps and grids ----------------------------------------------------
    def _domain_of(self, nside, user_ids, nest):
        """The cached :class:`~foscat_core.scattering.edge.Domain` of ids in the ``nest`` ordering."""
        key = (nside, nest, None if user_ids is None else np.asarray(user_ids).tobytes())
        dom = self._domains.get(key)
        if dom is None:
            dom = self._domains[key] = edge.build_domain(nside, user_ids, nest)
        return dom

    def _resolve(self, n, nside, cell_ids, nest, from_grid):
        """The :class:`~foscat_core.scattering.edge.Domain` of maps of ``n`` cells: the grid of a
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

    def _gather(self, v, dom):
        """A native (B, N) map put in NESTED order when its domain asks for it."""
        if dom.gather is None:
            return v
        if dom.native_gather is None or dom.native_gather[0] is not self._bk:
            dom.native_gather = (self._bk, self._bk.index_array(dom.gather))
        return self._bk.take(v, dom.native_gather[1], axis=1)

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
        """
        bk, xp = self._bk, self._bk.xp
        if norm not in NORMS:
            raise ValueError(f"norm must be one of None, 'self', 'auto', got {norm!r}")
        x, nside, cell_ids, nest, grid = edge.read_grid(x, nside, cell_ids, nest)
        x = edge.maps(bk, x, "x", self.all_type)
        n = int(x.shape[1])
        dom = self._resolve(n, nside, cell_ids, nest, grid is not None)
        nside, cell_ids = dom.nside, dom.cell_ids
        x = self._gather(x, dom)
        if y is not None:
            y = edge.maps(bk, edge.companion_values(y, "y", dom), "y", self.all_type)
            if tuple(y.shape) != (int(x.shape[0]), n):
                raise ValueError(f"y must have the shape of x {(int(x.shape[0]), n)}, got {tuple(y.shape)}")
            y = self._gather(y, dom)
        default_j, allowed = self.max_scales(nside, cell_ids)
        if Jmax is None:
            n_scales = default_j
        else:
            n_scales = check_positive_int(Jmax, "Jmax")
            if n_scales > allowed:
                raise ValueError(f"Jmax={n_scales} exceeds the {allowed} scales this domain allows")
        levels = self._pyramid(nside, cell_ids)["levels"][:n_scales]
        filters = [level_filter(lv, self.KERNELSZ, self.gauge_type, bk, self.all_type) for lv in levels]
        if mask is None:
            weights = []
            for lv in levels:
                if lv.uniform_weight is None or lv.uniform_weight[0] != bk.name:
                    w = bk.asarray(np.full((1, lv.n_cells), 1.0 / lv.n_cells), dtype=self.all_type)
                    lv.uniform_weight = (bk.name, w)
                weights.append(lv.uniform_weight[1])
            mask_rows, mask_hash = 0, None
        else:
            m = edge.host_mask(bk, edge.companion_values(mask, "mask", dom), n)
            if dom.gather is not None:
                m = m[:, dom.gather]
            mask_rows, mask_hash = m.shape[0], hash_array(m if dom.canonical is None else m[:, dom.canonical])
            weights = [bk.asarray(w, dtype=self.all_type) for w in mask_pyramid(m, levels)]

        n_fields = 1 if y is None else 2
        z = x if y is None else xp.concat([x, y], axis=0)
        raw = assemble(bk, scattering_scales(self, z, n_fields, levels, weights, filters), self.NORIENT, n_fields)
        coeffs = {"S0": self._s0(x, y, weights[0]), "S1": raw["S1"], "S2": _pair(xp, raw["S2"])}
        complex_names = {"S3", "S3P", "S4"} | ({"S2"} if y is not None else set())
        s3, s3p, s4 = raw["S3"], raw.get("S3P"), raw["S4"]
        j2_j3, j1_j2_j3 = scale_indices(n_scales)
        if norm is not None:
            s2x = raw["S2x"]
            s2y = raw.get("S2y", s2x)
            if norm == "auto":
                s2x, s2y = self._auto_reference(s2x, s2y)
            sq = xp.sqrt
            i2, i3 = bk.index_array(j2_j3[:, 0]), bk.index_array(j2_j3[:, 1])
            n3 = sq(bk.take(s2y, i2, axis=2)[..., :, None] * bk.take(s2x, i3, axis=2)[..., None, :])
            s3 = (s3[0] / n3, s3[1] / n3)
            if s3p is not None:
                n3p = sq(bk.take(s2x, i2, axis=2)[..., :, None] * bk.take(s2y, i3, axis=2)[..., None, :])
                s3p = (s3p[0] / n3p, s3p[1] / n3p)
            i1, i2 = bk.index_array(j1_j2_j3[:, 0]), bk.index_array(j1_j2_j3[:, 1])
            n4 = sq(bk.take(s2x, i1, axis=2)[..., :, None, None] * bk.take(s2y, i2, axis=2)[..., None, :, None])
            s4 = (s4[0] / n4, s4[1] / n4)
        coeffs["S3"] = _pair(xp, s3)
        if s3p is not None:
            coeffs["S3P"] = _pair(xp, s3p)
        coeffs["S4"] = _pair(xp, s4)
        settings = OperatorSettings(nside, dom.n_cells, dom.cells_hash, dom.nest, self.KERNELSZ, self.NORIENT,
                                    self.LAMBDA, self.gauge_type, n_scales, norm, y is not None, mask_rows, mask_hash)
        return ScatteringStatistics(coeffs, complex_names, self.backend, j2_j3, j1_j2_j3, cross=y is not None,
                                    norm=norm, settings=settings)

    def _auto_reference(self, s2x, s2y):
        bk = self._bk
        if self._norm_ref is None:
            self._norm_ref = tuple(bk.to_numpy(s) for s in (s2x, s2y))
        ref_x, ref_y = self._norm_ref
        for ref, cur in ((ref_x, s2x), (ref_y, s2y)):
            rs, cs = ref.shape, tuple(int(d) for d in cur.shape)
            if rs[1:] != cs[1:] or rs[0] not in (1, cs[0]):
                raise ValueError(f"norm='auto': the stored reference S2 has shape {rs}, incompatible with this "
                                 f"call's {cs} (other scales, mask or batch); call clean_norm() to reset it")
        return bk.asarray(ref_x, dtype=self.all_type), bk.asarray(ref_y, dtype=self.all_type)

    def _s0(self, x, y, w):
        """(B, M, 2): weighted mean of x and variance (cross: covariance with y)."""
        xp = self._bk.xp
        wt = xp.permute_dims(w, (1, 0))
        mx = xp.matmul(x, wt)  # (B, M)
        dx = x[:, None, :] - mx[:, :, None]
        if y is None:
            var = xp.sum(dx * dx * w[None], axis=-1)
        else:
            my = xp.matmul(y, wt)
            var = xp.sum(dx * (y[:, None, :] - my[:, :, None]) * w[None], axis=-1)
        return xp.stack([mx, var], axis=-1)

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
