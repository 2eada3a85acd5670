"""HEALPix NESTED domains and the maps between pyramid levels.

A :class:`Domain` is an nside plus the NESTED ids of the cells it covers, in the order the user
gave (``None`` means the full sky, ids ``0 .. 12*nside**2 - 1`` in order). Index math is int64.
"""

import numpy as np

from ._validation import check_cell_ids, check_nside
from .memory_budget import require_full_sky_ids


class Domain:
    """A set of HEALPix cells at one resolution, NESTED ordering.

    Parameters
    ----------
    nside : int
        Power of two in ``[1, 2**29]``.
    cell_ids : array_like of int, shape (N,), optional
        Unique NESTED ids; any order, which every output keeps. ``None`` = full sky (its
        ``12 * nside**2`` int64 ids are held in memory: a ``ValueError`` says so at once when
        they cannot fit).

    Examples
    --------
    >>> d = Domain(4, [5, 1, 2, 3])
    >>> d.parent().cell_ids
    array([0, 1])
    """

    def __init__(self, nside, cell_ids=None):
        self.nside = check_nside(nside)
        self.npix = 12 * self.nside * self.nside
        if cell_ids is None:
            require_full_sky_ids(self.nside)
            self.cell_ids = np.arange(self.npix, dtype=np.int64)
            self.is_full_sky = True
        else:
            self.cell_ids = check_cell_ids(cell_ids, self.nside)
            self.is_full_sky = self.cell_ids.size == self.npix and bool(
                np.all(self.cell_ids == np.arange(self.npix))
            )
        self._sorter = None

    @property
    def n_cells(self):
        return int(self.cell_ids.size)

    def __len__(self):
        return self.n_cells

    def __repr__(self):
        kind = "full sky" if self.is_full_sky else f"{self.n_cells} cells"
        return f"Domain(nside={self.nside}, {kind})"

    def _sort(self):
        if self._sorter is None:
            self._sorter = np.argsort(self.cell_ids, kind="stable")
        return self._sorter

    def locate(self, ids):
        """Positions of NESTED ``ids`` in this domain and a mask of those that are present.

        Returns
        -------
        positions : ndarray of int64, same shape as ``ids`` (0 where absent)
        present : ndarray of bool, same shape as ``ids``
        """
        ids = np.asarray(ids, dtype=np.int64)
        if self.is_full_sky:
            present = (ids >= 0) & (ids < self.npix)
            return np.where(present, ids, 0), present
        sorter = self._sort()
        sorted_ids = self.cell_ids[sorter]
        slot = np.searchsorted(sorted_ids, ids)
        slot = np.minimum(slot, sorted_ids.size - 1)
        present = sorted_ids[slot] == ids
        return np.where(present, sorter[slot], 0), present

    def parent(self):
        """The coarser domain: ``nside // 2`` and the sorted unique ``cell_ids // 4``."""
        if self.nside < 2:
            raise ValueError("a domain at nside=1 has no parent level")
        if self.is_full_sky:
            return Domain(self.nside // 2)
        return Domain(self.nside // 2, np.unique(self.cell_ids // 4))

    def children(self):
        """The finer domain holding the 4 NESTED children of every cell, in this domain's order."""
        if 2 * self.nside > 2**29:
            raise ValueError("nside 2**29 has no finer level")
        if self.is_full_sky:
            return Domain(2 * self.nside)
        return Domain(2 * self.nside, (self.cell_ids[:, None] * 4 + np.arange(4, dtype=np.int64)).reshape(-1))

    def child_table(self, parent):
        """Positions of each parent cell's children in this domain.

        Parameters
        ----------
        parent : Domain
            A domain at ``nside // 2``.

        Returns
        -------
        table : ndarray of int64, shape (N_parent, 4)
            Position in this domain of child ``k`` of each parent (0 where absent).
        present : ndarray of bool, shape (N_parent, 4)
        """
        if parent.nside * 2 != self.nside:
            raise ValueError(f"parent domain must have nside {self.nside // 2}, got {parent.nside}")
        kids = parent.cell_ids[:, None] * 4 + np.arange(4, dtype=np.int64)
        return self.locate(kids)

    def groups_are_contiguous(self):
        """True when every parent's 4 children sit together, in order: then a reshape replaces a gather."""
        if self.is_full_sky:  # no pass over (and no temporaries of) every cell of the sky
            return True
        ids = self.cell_ids
        if ids.size % 4:
            return False
        quads = ids.reshape(-1, 4)
        return bool(np.all(quads % 4 == np.arange(4)) and np.all(quads // 4 == (quads[:, :1] // 4))
                    and np.all(np.diff(quads[:, 0]) > 0))
