"""The scale loop of the scattering covariance, written once against a backend's array namespace.

Complex values are carried as separate real and imaginary arrays; every weighted mean over cells
is a matrix product with the per-scale weights, and the S3 / S4 sums over all orientation triples
are batched matrix products (Gram matrices), so there is no Python loop over orientations.
"""

import numpy as np

from foscat_core.pyramid_ops import down

from .compat import safe_modulus, safe_sqrt


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


def scattering_scales(op, z, n_fields, levels, weights, filters):
    """Run the scale loop.

    Parameters
    ----------
    op : ScatteringCovariance
    z : native array, shape (F*B, N_0)
        The maps, field-major: ``z[:B]`` is x and, when ``n_fields == 2``, ``z[B:]`` is y.
    levels : list of Level
    weights : list of native arrays, shape (M, N_j)
    filters : list of SphericalStencil

    Returns
    -------
    dict of lists over scales of native arrays (see :meth:`ScatteringCovariance.eval`).
    """
    bk, xp = op._bk, op._bk.xp
    k = op.NORIENT
    n_scales = len(levels)
    full_kernel, wavelet_kernel = op._kernels()
    fb = int(z.shape[0])
    b = fb // n_fields
    out = {"S1": [], "S2": [], "S2x": [], "S2y": [], "S3": [], "S3P": [], "S4": []}
    carried = None
    for j, (level, w, flt) in enumerate(zip(levels, weights, filters)):
        last = j == n_scales - 1
        n = level.n_cells
        wt = xp.permute_dims(w, (1, 0))
        y1 = flt.filter(z, wavelet_kernel if last else full_kernel)  # (FB, C, N)
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
        y2 = flt.filter(xp.reshape(mods, (fb * jp * k, n)), wavelet_kernel if last else full_kernel)
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
            z, _ = down(y1[:, 2 * k], level.nside, level.cell_ids, mode="mean", backend=bk)
            carried, _ = down(y2[:, :, :, 2 * k], level.nside, level.cell_ids, mode="mean", backend=bk)
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


def assemble(bk, out, n_orient, n_fields):
    """Stack the per-scale lists of :func:`scattering_scales` into coefficient arrays.

    Complex coefficients come back as ``(re, im)`` tuples of arrays.
    """
    xp = bk.xp
    k = n_orient
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
    for jp, pair in enumerate(out["S4"], start=1):
        flat = bk.index_array(pair_index(jp)[0])
        for i, a in enumerate(pair):  # (B, M, K3, J'*K1, J'*K2)
            b_, m_ = int(a.shape[0]), int(a.shape[1])
            a = xp.reshape(a, (b_, m_, k, jp, k, jp, k))
            a = xp.permute_dims(a, (0, 1, 3, 5, 4, 6, 2))  # (B, M, J1, J2, K1, K2, K3)
            a = xp.reshape(a, (b_, m_, jp * jp, k, k, k))
            parts[i].append(bk.take(a, flat, axis=2))
    res["S4"] = tuple(xp.concat(p, axis=2) for p in parts)
    return res
