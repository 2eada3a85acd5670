"""The scale loop of the scattering covariance, written once against a backend's array namespace.

Complex values are carried as separate real and imaginary arrays; every weighted mean over cells
is a matrix product with the per-scale weights, and the S3 / S4 sums over all orientation triples
are batched matrix products (Gram matrices), so there is no Python loop over orientations.
"""

from dataclasses import dataclass

import numpy as np

from .compat import safe_modulus, safe_sqrt
from .pyramid import level_filter


def pair_index(n):
    """Flat positions ``j1 * n + j2`` of the pairs ``j1 <= j2 < n``, and the pairs themselves."""
    pairs = [(a, b) for b in range(n) for a in range(b + 1)]
    pairs.sort()
    flat = np.array([a * n + b for a, b in pairs], dtype=np.int64)
    return flat, np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _wmean(xp, a, wt):
    """Weighted mean over the last axis: ``a`` (..., N), ``wt`` (N, M) -> (..., M)."""
    return xp.matmul(a, wt)


def _move_mask_axis(xp, a):
    """(B, ..., M) -> (B, M, ...)."""
    nd = len(a.shape)
    return xp.permute_dims(a, (0, nd - 1) + tuple(range(1, nd - 1)))


def _cross_mean(xp, ar, ai, br, bi, wt):
    """``<a * conj(b)>`` per mask row for complex maps given as real parts: returns (re, im)."""
    return _wmean(xp, ar * br + ai * bi, wt), _wmean(xp, ai * br - ar * bi, wt)


def _s3(xp, cr, ci, fr, fi, w):
    """``sum_n w[m,n] c[b,k3,n] conj(F[b,q,k3,n])``.

    cr, ci: (B, K3, N); fr, fi: (B, K3, Q, N) with Q = J' * K2; w: (M, N).
    Returns (re, im), each (B, M, K3, Q).
    """
    cwr = xp.expand_dims(cr[:, None, :, :] * w[None, :, None, :], axis=-1)  # (B, M, K3, N, 1)
    cwi = xp.expand_dims(ci[:, None, :, :] * w[None, :, None, :], axis=-1)
    fr, fi = fr[:, None], fi[:, None]  # (B, 1, K3, Q, N)
    re = xp.matmul(fr, cwr) + xp.matmul(fi, cwi)
    im = xp.matmul(fr, cwi) - xp.matmul(fi, cwr)
    return re[..., 0], im[..., 0]


def _s4(xp, ar, ai, br, bi, w):
    """Gram matrices ``sum_n w[m,n] A[b,k3,p,n] conj(B[b,k3,q,n])``.

    ar, ai, br, bi: (B, K3, Q, N); w: (M, N). Returns (re, im), each (B, M, K3, Q, Q).
    """
    wb = w[None, :, None, None, :]
    awr, awi = ar[:, None] * wb, ai[:, None] * wb  # (B, M, K3, Q, N)
    nd = len(br.shape) + 1
    t = tuple(range(nd - 2)) + (nd - 1, nd - 2)
    btr, bti = xp.permute_dims(br[:, None], t), xp.permute_dims(bi[:, None], t)  # (B, 1, K3, N, Q)
    re = xp.matmul(awr, btr) + xp.matmul(awi, bti)
    im = xp.matmul(awi, btr) - xp.matmul(awr, bti)
    return re, im


@dataclass(frozen=True)
class ScalePlan:
    """The per-scale data of one domain and number of scales, built once (eagerly, see
    :func:`build_plan`) and only read by :func:`scattering_coefficients`: a traced call (``jax.jit``,
    ``tf.function``) finds every constant here and changes nothing.

    Attributes
    ----------
    n_orient : int
        K, the number of orientations.
    full_kernel, wavelet_kernel : native arrays, shape (2K + 1, P) and (2K, P)
        The bank with and without the smoother (the last scale needs no smoothing).
    filters : tuple of DepthwiseFilter
        One per scale (their ``filter`` applies the bank), with their products' tables built.
    downs : tuple of DownPlan
        The mean ``down`` from scale ``j`` to ``j + 1`` (one fewer than scales).
    n_cells : tuple of int
        ``N_j`` of each scale.
    uniform : tuple of native arrays, shape (1, N_j)
        The weights ``1 / N_j`` of a call without mask.
    s4_index : tuple of native int arrays
        ``pair_index(j + 1)[0]`` of each scale (the S4 pairs ``j1 <= j2``).
    j2_j3, j1_j2_j3 : ndarray of int64
        See :func:`scale_indices`.
    norm_index : tuple of 4 native int arrays
        ``j2_j3[:, 0]``, ``j2_j3[:, 1]``, ``j1_j2_j3[:, 0]``, ``j1_j2_j3[:, 1]``.
    """

    n_orient: int
    full_kernel: object
    wavelet_kernel: object
    filters: tuple
    downs: tuple
    n_cells: tuple
    uniform: tuple
    s4_index: tuple
    j2_j3: np.ndarray
    j1_j2_j3: np.ndarray
    norm_index: tuple

    @property
    def n_scales(self):
        return len(self.filters)


def build_plan(bk, dtype, levels, kernel_host, n_orient, kernel_sz, gauge_type):
    """The :class:`ScalePlan` of ``levels`` (list of :class:`~foscat_core.scattering.pyramid.Level`).

    ``kernel_host`` : ndarray, shape (1, 2K + 1, P), the :func:`~foscat_core.scattering.wavelets.conv_kernel`.
    Every stencil and down plan is built here, not on first use inside a (possibly traced) call.
    This is host code, which ``torch.compile`` cannot trace: a plan first asked for while it
    traces is a ``RuntimeError`` saying to make one eager call first (without ``fullgraph=True``,
    Dynamo then runs that call eagerly), and the build itself runs as :meth:`Backend.host_call`.
    """
    if bk.is_compiling():
        raise RuntimeError(f"the scattering operator builds the per-scale data of a domain (here nside "
                           f"{levels[0].nside}, {levels[0].n_cells} cells, {len(levels)} scales) on "
                           "its first eager call: call op.eval once on maps of this domain (and the same Jmax) "
                           "outside torch.compile, then compile")
    return bk.host_call(_build_plan)(bk, dtype, levels, kernel_host, n_orient, kernel_sz, gauge_type)


def _build_plan(bk, dtype, levels, kernel_host, n_orient, kernel_sz, gauge_type):
    k = n_orient
    filters = tuple(level_filter(lv, kernel_sz, gauge_type, bk, dtype) for lv in levels)
    downs = tuple(lv.down_plan for lv in levels[:-1])
    uniform = tuple(bk.asarray(np.full((1, lv.n_cells), 1.0 / lv.n_cells), dtype=dtype) for lv in levels)
    j2_j3, j1_j2_j3 = scale_indices(len(levels))
    return ScalePlan(
        n_orient=k, full_kernel=bk.asarray(kernel_host[0], dtype=dtype),
        wavelet_kernel=bk.asarray(kernel_host[0, :2 * k], dtype=dtype), filters=filters, downs=downs,
        n_cells=tuple(lv.n_cells for lv in levels), uniform=uniform,
        s4_index=tuple(bk.index_array(pair_index(jp)[0]) for jp in range(1, len(levels) + 1)),
        j2_j3=j2_j3, j1_j2_j3=j1_j2_j3,
        norm_index=tuple(bk.index_array(a) for a in (j2_j3[:, 0], j2_j3[:, 1], j1_j2_j3[:, 0], j1_j2_j3[:, 1])))


def scattering_scales(bk, plan, z, n_fields, weights):
    """Run the scale loop.

    Parameters
    ----------
    bk : Backend
    plan : ScalePlan
    z : native array, shape (F*B, N_0)
        The maps, field-major: ``z[:B]`` is x and, when ``n_fields == 2``, ``z[B:]`` is y.
    n_fields : {1, 2}
    weights : sequence of native arrays, shape (M, N_j)
        Per-scale weights, every row summing to 1.

    Returns
    -------
    dict of lists over scales of native arrays (see :func:`assemble`).
    """
    xp = bk.xp
    k = plan.n_orient
    n_scales = plan.n_scales
    fb = int(z.shape[0])
    b = fb // n_fields
    out = {"S1": [], "S2": [], "S2x": [], "S2y": [], "S3": [], "S3P": [], "S4": []}
    carried = None
    for j, (n, w, flt) in enumerate(zip(plan.n_cells, weights, plan.filters)):
        last = j == n_scales - 1
        kernel = plan.wavelet_kernel if last else plan.full_kernel
        wt = xp.permute_dims(w, (1, 0))
        y1 = flt.filter(z, kernel)  # (FB, C, N)
        c_re, c_im = y1[:, :k], y1[:, k:2 * k]
        mod = safe_modulus(xp, c_re, c_im)  # (FB, K, N)
        pw = c_re * c_re + c_im * c_im
        s2_all = _move_mask_axis(xp, _wmean(xp, pw, wt))  # (FB, M, K)
        if n_fields == 1:
            out["S1"].append(_move_mask_axis(xp, _wmean(xp, mod, wt)))
            out["S2"].append(s2_all)
            out["S2x"].append(s2_all)
        else:
            gm = safe_sqrt(xp, mod[:b] * mod[b:])
            out["S1"].append(_move_mask_axis(xp, _wmean(xp, gm, wt)))
            re, im = _cross_mean(xp, c_re[:b], c_im[:b], c_re[b:], c_im[b:], wt)
            out["S2"].append((_move_mask_axis(xp, re), _move_mask_axis(xp, im)))
            out["S2x"].append(s2_all[:b])
            out["S2y"].append(s2_all[b:])
        # Moduli of every scale j2 <= j, carried down to this scale: (FB, J', K, N).
        mod = xp.expand_dims(mod, axis=1)
        mods = mod if carried is None else xp.concat([carried, mod], axis=1)
        jp = j + 1
        y2 = flt.filter(xp.reshape(mods, (fb * jp * k, n)), kernel)
        y2 = xp.reshape(y2, (fb, jp, k, int(y2.shape[1]), n))  # (FB, J', K2, C, N)
        # F[b, j2, k2, k3] -> (FB, K3, J'*K2, N)
        f_re = xp.reshape(xp.permute_dims(y2[:, :, :, :k], (0, 3, 1, 2, 4)), (fb, k, jp * k, n))
        f_im = xp.reshape(xp.permute_dims(y2[:, :, :, k:2 * k], (0, 3, 1, 2, 4)), (fb, k, jp * k, n))
        fx_re, fx_im = f_re[:b], f_im[:b]
        fy_re, fy_im = (f_re[b:], f_im[b:]) if n_fields == 2 else (fx_re, fx_im)
        cx_re, cx_im = c_re[:b], c_im[:b]
        # S3: x at j3 against the moduli of y; S3P: y at j3 against the moduli of x.
        out["S3"].append(_s3(xp, cx_re, cx_im, fy_re, fy_im, w))
        if n_fields == 2:
            out["S3P"].append(_s3(xp, c_re[b:], c_im[b:], fx_re, fx_im, w))
        out["S4"].append(_s4(xp, fx_re, fx_im, fy_re, fy_im, w))
        if not last:
            z = plan.downs[j](y1[:, 2 * k], "mean", bk)
            carried = plan.downs[j](y2[:, :, :, 2 * k], "mean", bk)
    return out


def scale_indices(n_scales):
    """Scale labels of the S3 and S4 coefficient axes.

    Returns
    -------
    j2_j3 : ndarray of int64, shape (n_s3, 2)
        ``(j2, j3)`` of each S3 entry, ``j2 <= j3``, ordered by j3 then j2.
    j1_j2_j3 : ndarray of int64, shape (n_s4, 3)
        ``(j1, j2, j3)`` of each S4 entry, ``j1 <= j2 <= j3``, ordered by j3 then (j1, j2).
    """
    s3 = [(j2, j3) for j3 in range(n_scales) for j2 in range(j3 + 1)]
    s4 = [(j1, j2, j3) for j3 in range(n_scales) for j1, j2 in pair_index(j3 + 1)[1]]
    return np.array(s3, dtype=np.int64).reshape(-1, 2), np.array(s4, dtype=np.int64).reshape(-1, 3)


def assemble(bk, out, plan, n_fields):
    """Stack the per-scale lists of :func:`scattering_scales` into coefficient arrays.

    Returns a dict: ``S1`` (B, M, J, K); ``S2`` (B, M, J, K) (cross: an (re, im) pair); ``S2x``
    and, for cross statistics, ``S2y``: the power of each field, (B, M, J, K); ``S3`` and ``S3P``
    (cross only): (re, im) pairs of (B, M, n_s3, K2, K3); ``S4``: an (re, im) pair of
    (B, M, n_s4, K1, K2, K3).
    """
    xp = bk.xp
    k = plan.n_orient
    res = {"S1": xp.stack(out["S1"], axis=2)}
    if n_fields == 1:
        res["S2"] = xp.stack(out["S2"], axis=2)
    else:
        res["S2"] = tuple(xp.stack([s[i] for s in out["S2"]], axis=2) for i in (0, 1))
    res["S2x"] = xp.stack(out["S2x"], axis=2)
    if n_fields == 2:
        res["S2y"] = xp.stack(out["S2y"], axis=2)

    def s3_stack(items):
        parts = ([], [])
        for jp, pair in enumerate(items, start=1):
            for i, a in enumerate(pair):  # (B, M, K3, J'*K2)
                b_, m_ = int(a.shape[0]), int(a.shape[1])
                a = xp.reshape(a, (b_, m_, k, jp, k))
                parts[i].append(xp.permute_dims(a, (0, 1, 3, 4, 2)))  # (B, M, J', K2, K3)
        return tuple(xp.concat(p, axis=2) for p in parts)

    res["S3"] = s3_stack(out["S3"])
    if n_fields == 2:
        res["S3P"] = s3_stack(out["S3P"])
    parts = ([], [])
    for jp, (pair, flat) in enumerate(zip(out["S4"], plan.s4_index), start=1):
        for i, a in enumerate(pair):  # (B, M, K3, J'*K1, J'*K2)
            b_, m_ = int(a.shape[0]), int(a.shape[1])
            a = xp.reshape(a, (b_, m_, k, jp, k, jp, k))
            a = xp.permute_dims(a, (0, 1, 3, 5, 4, 6, 2))  # (B, M, J1, J2, K1, K2, K3)
            a = xp.reshape(a, (b_, m_, jp * jp, k, k, k))
            parts[i].append(bk.take(a, flat, axis=2))
    res["S4"] = tuple(xp.concat(p, axis=2) for p in parts)
    return res


def first_order(xp, x, y, w):
    """S0, (B, M, 2): weighted mean of x and variance (cross: covariance with y).

    x, y : native (B, N) (y may be None); w : native (M, N), rows summing to 1.
    """
    wt = xp.permute_dims(w, (1, 0))
    mx = xp.matmul(x, wt)  # (B, M)
    dx = x[:, None, :] - mx[:, :, None]
    if y is None:
        var = xp.sum(dx * dx * w[None], axis=-1)
    else:
        my = xp.matmul(y, wt)
        var = xp.sum(dx * (y[:, None, :] - my[:, :, None]) * w[None], axis=-1)
    return xp.stack([mx, var], axis=-1)


def scattering_coefficients(bk, plan, x, y, weights):
    """Every coefficient of the maps ``x`` (and ``y``) before normalisation: a pure function of its
    arguments (it reads ``plan`` and changes nothing), so it can run under ``jax.jit`` or
    ``tf.function`` and be differentiated.

    Parameters
    ----------
    bk : Backend
    plan : ScalePlan
    x : native array, shape (B, N_0)
        Finite maps in NESTED cell order of the plan's domain.
    y : native array, shape (B, N_0), or None
        The second field of cross statistics.
    weights : sequence of native arrays, shape (M, N_j)
        Per-scale weights (``plan.uniform`` without mask).

    Returns
    -------
    dict
        ``S0`` (B, M, 2) and the entries of :func:`assemble`.
    """
    n_fields = 1 if y is None else 2
    z = x if y is None else bk.xp.concat([x, y], axis=0)
    raw = assemble(bk, scattering_scales(bk, plan, z, n_fields, weights), plan, n_fields)
    raw["S0"] = first_order(bk.xp, x, y, weights[0])
    return raw


def normalise(bk, plan, s3, s3p, s4, s2x, s2y):
    """S3, S3P, S4 (re, im) pairs divided by ``sqrt(S2 S2)`` of their scales and orientations (see
    ``ScatteringCovariance.eval``'s ``norm``); ``s2x``, ``s2y`` (B or 1, M, J, K); ``s3p`` may be None."""
    sq = bk.xp.sqrt
    i2, i3, i1, i2_4 = plan.norm_index
    n3 = sq(bk.take(s2y, i2, axis=2)[..., :, None] * bk.take(s2x, i3, axis=2)[..., None, :])
    s3 = (s3[0] / n3, s3[1] / n3)
    if s3p is not None:
        n3p = sq(bk.take(s2x, i2, axis=2)[..., :, None] * bk.take(s2y, i3, axis=2)[..., None, :])
        s3p = (s3p[0] / n3p, s3p[1] / n3p)
    n4 = sq(bk.take(s2x, i1, axis=2)[..., :, None, None] * bk.take(s2y, i2_4, axis=2)[..., None, :, None])
    return s3, s3p, (s4[0] / n4, s4[1] / n4)
