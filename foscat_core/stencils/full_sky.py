"""The full sky's stencil table from a quarter of it.

HEALPix is invariant under a rotation by pi/2 about the polar axis: it maps base face ``f`` onto
face ``f + 1`` of the same row (0-3 north, 4-7 equator, 8-11 south), keeping the position inside
the face, so NESTED id ``n`` goes to ``n`` with its face bits rotated. The ``phi`` frame (east,
north) turns with the cell, so the stencil of a rotated cell is the rotated stencil: the same
weights, ids with their faces rotated. The ``cosmo`` frame is the ``phi`` frame turned by
``-s*phi`` (``s`` = +1 north, -1 south of the equator), so it turns by a further ``-s*pi/2`` per
step; on the square K x K tap grid that is a permutation of the taps.

Only faces 0, 4 and 8 are computed; the other nine are copied from them, which is 4 times less
geometry and gives tables exactly symmetric under the rotation.
"""

import healpy as hp
import numpy as np

_BASE_FACES = (0, 4, 8)
_COPY_CELLS = 4096  # cells a copy chunk: its int64 temporaries stay in L2


def base_face_cells(nside):
    """Cell slices of faces 0, 4 and 8 (NESTED ids, which are the full sky's positions)."""
    n_face = nside * nside
    return [slice(face * n_face, (face + 1) * n_face) for face in _BASE_FACES]


def fill_rotated_faces(index, weight, nside, kernel_sz, gauge_type, run=map):
    """Fill faces 1-3, 5-7 and 9-11 of a full-sky table whose faces 0, 4 and 8 are filled.

    ``index``/``weight`` have shape (G, 12*nside**2, P, 4) (see ``compute_stencil``); ``run``
    maps a function over chunks (a thread pool's ``map`` to use several cores).
    """
    n_face = nside * nside
    shift = 2 * (nside.bit_length() - 1)  # NESTED id = face << shift | position in the face
    perms = _tap_permutations(kernel_sz, gauge_type)

    def copy(job):
        base, cells = job
        src = slice(base * n_face + cells.start, base * n_face + cells.stop)
        ids, weights = index[:, src], weight[:, src]
        low = (ids >> shift) & 3
        north = None if gauge_type == "phi" else _northern(nside, np.arange(src.start, src.stop, dtype=np.int64))
        for step in (1, 2, 3):
            dst = slice((base + step) * n_face + cells.start, (base + step) * n_face + cells.stop)
            rotated = ids + ((((low + step) & 3) - low) << shift)
            north_perm, south_perm = perms[step]
            if north is None:  # phi gauge: the taps keep their places
                index[:, dst], weight[:, dst] = rotated, weights
                continue
            for mask, perm in ((north, north_perm), (~north, south_perm)):
                if mask.any():
                    cells_dst = np.arange(dst.start, dst.stop)[mask]
                    index[:, cells_dst] = rotated[:, mask][:, :, perm]
                    weight[:, cells_dst] = weights[:, mask][:, :, perm]

    jobs = [(base, slice(s, min(s + _COPY_CELLS, n_face))) for base in _BASE_FACES for s in range(0, n_face, _COPY_CELLS)]
    list(run(copy, jobs))


def _northern(nside, ids):
    """Cells on the side ``z >= 0`` of the equator, decided as ``gauge_angles`` decides it."""
    theta, _ = hp.pix2ang(nside, ids, nest=True)
    return np.cos(theta) >= 0.0


def _tap_permutations(kernel_sz, gauge_type):
    """For each step 1-3: (north, south) source tap of every tap, or (None, None) for ``phi``.

    A frame turned by ``beta`` puts tap ``(u, v)`` where the unturned frame has
    ``(u cos b - v sin b, u sin b + v cos b)``.
    """
    from .geometry import tap_offsets  # here: geometry imports this module

    if gauge_type == "phi":
        return {step: (None, None) for step in (1, 2, 3)}
    u, v = (np.rint(a).astype(np.int64) for a in tap_offsets(kernel_sz))
    half = kernel_sz // 2

    def permutation(quarter_turns):  # beta = quarter_turns * pi/2
        c, s = ((1, 0), (0, 1), (-1, 0), (0, -1))[quarter_turns % 4]
        us, vs = u * c - v * s, u * s + v * c
        return (half - vs) * kernel_sz + (us + half)

    return {step: (permutation(-step), permutation(step)) for step in (1, 2, 3)}
