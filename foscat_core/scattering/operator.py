"""The scattering-covariance operator (``funct`` in the reference library)."""

import numbers

import numpy as np

from foscat_core._arrays import as_backend_array
from foscat_core._validation import check_dtype_name, check_kernel_size, check_nside, check_positive_int
from foscat_core.backends import resolve_backend
from foscat_core.stencil_geometry import GAUGE_TYPES

from .compat import BackendCompat
from .compute import assemble, scale_indices, scattering_scales
from .pyramid import build_levels, count_scales, level_filter, mask_pyramid
from .statistics import ScatteringStatistics
from .wavelets import conv_kernel

NORMS = (None, "self", "auto")


class ScatteringCovariance:
    """Scattering-covariance statistics (S0, S1, S2, S3, S3P, S4) of HEALPix maps (NESTED).

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
    """

    def __init__(self, KERNELSZ=5, NORIENT=4, LAMBDA=1.2, JmaxDelta=0, nstep_max=20, all_type="float64", backend=None,
                 gauge_type="phi"):
        self.KERNELSZ = check_kernel_size(KERNELSZ, "KERNELSZ")
        self.NORIENT = check_positive_int(NORIENT, "NORIENT")
        self.LAMBDA = float(LAMBDA)
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
        self._kernel_host = conv_kernel(self.KERNELSZ, self.NORIENT, self.LAMBDA)  # validates LAMBDA
        self._kernel_native = None
        self._pyramids = {}
        self._norm_ref = None

    def __repr__(self):
        return (f"ScatteringCovariance(KERNELSZ={self.KERNELSZ}, NORIENT={self.NORIENT}, LAMBDA={self.LAMBDA}, "
                f"JmaxDelta={self.JmaxDelta}, nstep_max={self.nstep_max}, all_type={self.all_type!r}, "
                f"backend={self._bk.name!r})")

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

    # --- input checks ---------------------------------------------------------------------
    def _maps(self, v, name):
        v = as_backend_array(self._bk, v, name, self.all_type)
        if len(v.shape) == 1:
            v = self._bk.xp.reshape(v, (1, int(v.shape[0])))
        elif len(v.shape) != 2:
            raise ValueError(f"{name} must have shape (N,) or (B, N), got shape {tuple(v.shape)}")
        return v

    def _domain(self, n, nside, cell_ids):
        if cell_ids is None:
            if nside is None:
                ns = int(round(np.sqrt(n / 12.0)))
                if 12 * ns * ns != n or ns < 1 or ns & (ns - 1):
                    raise ValueError(f"x: {n} cells is not a full HEALPix sky (12 * nside**2 with nside a power "
                                     "of two); pass cell_ids and nside for a regional map")
                return ns, None
            nside = check_nside(nside)
            if n != 12 * nside * nside:
                raise ValueError(f"x must have 12 * nside**2 = {12 * nside * nside} cells on its last axis for a full "
                                 f"sky at nside={nside}, got {n}; pass cell_ids for a regional map")
            return nside, None
        if nside is None:
            raise ValueError("nside is required when cell_ids is given (the map may be at any resolution)")
        nside = check_nside(nside)
        ids = np.asarray(cell_ids)
        if ids.ndim != 1 or ids.shape[0] != n:
            raise ValueError(f"cell_ids must be 1-D with one id per cell of x ({n}), got shape {ids.shape}")
        return nside, cell_ids

    def _mask(self, mask, n):
        bk = self._bk
        m = bk.to_numpy(mask) if bk.is_native(mask) else np.asarray(mask)
        if m.dtype == bool:
            m = m.astype(np.float64)
        if not np.issubdtype(m.dtype, np.number) or np.iscomplexobj(m):
            raise TypeError(f"mask must hold real numbers, got dtype {m.dtype}")
        m = m.astype(np.float64)
        if m.ndim == 1:
            m = m[None, :]
        if m.ndim != 2 or m.shape[1] != n:
            raise ValueError(f"mask must have shape (M, {n}) or ({n},) to match x, got shape {np.shape(mask)}")
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            raise ValueError("mask must hold finite non-negative weights")
        if np.any(m.sum(axis=1) <= 0):
            raise ValueError("mask: every row needs a positive sum (a row of zeros selects no cell)")
        return m

    # --- the operator ---------------------------------------------------------------------
    def eval(self, x, y=None, mask=None, norm=None, cell_ids=None, nside=None, Jmax=None):
        """Scattering covariance of ``x`` (auto) or of ``x`` and ``y`` (cross).

        Parameters
        ----------
        x : array, shape (B, N) or (N,)
            Maps in NESTED order (a 1-D map is a batch of one, B = 1): a full sky (nside inferred
            from N unless given) or the cells ``cell_ids`` at ``nside``. Host data is converted to
            ``all_type``; a framework tensor must already be of the operator's backend and dtype
            (gradients flow through it).
        y : array, same shape as x, optional
            Second map for the cross statistics (adds S3P).
        mask : array, shape (M, N) or (N,), optional
            Non-negative weights: every mean over cells is a weighted mean, one per mask row.
            The mask follows the maps down the scales (mean ``down``).
        norm : {None, "self", "auto"}
            Divide S3 by ``sqrt(S2[j2,k2] S2[j3,k3])`` and S4 by ``sqrt(S2[j1,k1] S2[j2,k2])``
            (for cross statistics, the S2 of the map each index belongs to: S3 uses y's for j2 and
            x's for j3, S3P the reverse, S4 x's for j1 and y's for j2). ``"self"``: the S2 of the
            maps being evaluated. ``"auto"``: the first call with ``"auto"`` stores its S2 (x's and
            y's, detached) on the operator and every later ``"auto"`` call divides by that stored reference (its
            batch axis must be 1 or match); :meth:`clean_norm` forgets it.
        cell_ids : array_like of int, shape (N,), optional
            NESTED ids of a regional map, any order; needs ``nside``. Scales coarser than the
            first work on the parents present; at the domain border the stencil renormalises
            over the in-domain neighbours.
        nside : int, optional
        Jmax : int, optional
            Number of scales; default: as many as the domain allows (down to nside 1, stopping
            before a level with fewer than 12 cells), minus ``JmaxDelta``, capped by ``nstep_max``.

        Returns
        -------
        ScatteringStatistics
            See its docstring for every coefficient's shape; ``M = 1`` without mask.
        """
        bk, xp = self._bk, self._bk.xp
        if norm not in NORMS:
            raise ValueError(f"norm must be one of None, 'self', 'auto', got {norm!r}")
        x = self._maps(x, "x")
        n = int(x.shape[1])
        nside, cell_ids = self._domain(n, nside, cell_ids)
        if y is not None:
            y = self._maps(y, "y")
            if tuple(y.shape) != tuple(x.shape):
                raise ValueError(f"y must have the shape of x {tuple(x.shape)}, got {tuple(y.shape)}")
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
        else:
            host = mask_pyramid(self._mask(mask, n), levels)
            weights = [bk.asarray(w, dtype=self.all_type) for w in host]

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
        return ScatteringStatistics(coeffs, complex_names, self.backend, j2_j3, j1_j2_j3, cross=y is not None,
                                    norm=norm)

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
