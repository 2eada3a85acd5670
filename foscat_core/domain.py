"""HEALPix NESTED domains and the maps between pyramid levels.

A :class:`Domain` is an nside plus the NESTED ids of the cells it covers, in the order the user
gave (``None`` means the full sky, ids ``0 .. 12*nside**2 - 1`` in order). Index math is int64.

A Domain is the geometry value the library passes around: stencils, down/up plans, networks and
the scattering pyramid take one and never re-check or re-sort its ids. It is immutable (its ids
are a read-only array), and its coarser levels are computed once and cached on it, so every
consumer of ``d.parent()`` or ``d.pyramid(n)`` gets the very same objects.
"""

import threading

import numpy as np

from ._validation import check_cell_ids, check_nside, check_positive_int
from .memory_budget import require_full_sky_ids

_cache_lock = threading.Lock()  # module-level: a lock on the instance could not be pickled
_CACHES = ("_parent", "_children", "_sorter")


def own_ids(cell_ids, nside, name="cell_ids"):
    """Checked ids (see :func:`~foscat_core._validation.check_cell_ids`) in an array of the
    domain's own: an array or tensor given may share memory with the result, and freezing it
    would be a side effect on the caller's data."""
    ids = check_cell_ids(cell_ids, nside, name)
    return ids if isinstance(cell_ids, (list, tuple, range)) else ids.copy()


class Domain:
    """A set of HEALPix cells at one resolution, NESTED ordering; immutable.

    Parameters
    ----------
    nside : int
        Power of two in ``[1, 2**29]``.
    cell_ids : array_like of int, shape (N,), optional
        Unique NESTED ids; any order, which every output keeps. ``None`` = full sky (its
        ``12 * nside**2`` int64 ids are held in memory: a ``ValueError`` says so at once when
        they cannot fit). Checked once, here; a NumPy array is copied, so later changes to it
        do not reach the domain.
        (``Domain`` objects made by the library from checked ids skip both.)

    Attributes
    ----------
    nside, npix, n_cells : int
    cell_ids : ndarray of int64, shape (N,), read-only
    is_full_sky : bool
        Every cell of the sphere, in ascending NESTED order.

    Examples
    --------
    >>> d = Domain(4, [5, 1, 2, 3])
    >>> d.parent().cell_ids
    array([0, 1])
    >>> d.parent() is d.parent()              # computed once, shared
    True
    >>> [level.nside for level in d.pyramid(3)]
    [4, 2, 1]
    """

    def __init__(self, nside, cell_ids=None):
        nside = check_nside(nside)
        if cell_ids is None:
            self._init(nside, None, True)
            return
        self._init(nside, own_ids(cell_ids, nside), None)

    @classmethod
    def _checked(cls, nside, ids, full=None, ascending=False):
        """A domain of ids already known valid (unique NESTED int64 at ``nside``): no check, no copy.

        ``full``: ``True``/``False`` when known, ``None`` to work it out; ``ascending``: the ids
        are sorted, so lookups need no argsort. Only for ids this package made or checked.
        """
        dom = object.__new__(cls)
        dom._init(nside, ids, full)
        if ascending and not dom.is_full_sky:
            object.__setattr__(dom, "_sorter", False)  # False: cell_ids is its own sorted copy
        return dom

    def _init(self, nside, ids, full):
        npix = 12 * nside * nside
        if ids is None:
            require_full_sky_ids(nside)
            ids, full = np.arange(npix, dtype=np.int64), True
        elif full is None:
            full = ids.size == npix and bool(np.all(ids == np.arange(npix)))
        ids.flags.writeable = False
        for key, value in (("nside", nside), ("npix", npix), ("cell_ids", ids), ("is_full_sky", full),
                           ("_parent", None), ("_children", None), ("_sorter", None)):
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError(f"a Domain is immutable (cannot set {key!r}); build a new one")

    def __getstate__(self):
        # Caches are rebuilt on use; a pickle holds the ids only.
        return {k: v for k, v in self.__dict__.items() if k not in _CACHES}

    def __setstate__(self, state):
        self.__dict__.update(state, **{k: None for k in _CACHES})
        self.cell_ids.flags.writeable = False

    @property
    def n_cells(self):
        return int(self.cell_ids.size)

    def __len__(self):
        return self.n_cells

    def __repr__(self):
        kind = "full sky" if self.is_full_sky else f"{self.n_cells} cells"
        return f"Domain(nside={self.nside}, {kind})"

    def _cached(self, key, make):
        value = self.__dict__[key]
        if value is None:
            with _cache_lock:  # threads share domains (stencil chunks): one object per cache entry
                value = self.__dict__[key]
                if value is None:
                    value = make()
                    object.__setattr__(self, key, value)
        return value

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
        sorter = self._cached("_sorter", lambda: np.argsort(self.cell_ids, kind="stable"))
        sorted_ids = self.cell_ids if sorter is False else self.cell_ids[sorter]
        slot = np.searchsorted(sorted_ids, ids)
        slot = np.minimum(slot, sorted_ids.size - 1)
        present = sorted_ids[slot] == ids
        if sorter is False:
            return np.where(present, slot, 0), present
        return np.where(present, sorter[slot], 0), present

    def parent(self):
        """The coarser domain: ``nside // 2`` and the sorted unique ``cell_ids // 4``; the same
        object at every call."""
        if self.nside < 2:
            raise ValueError("a domain at nside=1 has no parent level")
        return self._cached("_parent", self._make_parent)

    def _make_parent(self):
        if self.is_full_sky:
            return Domain._checked(self.nside // 2, None, True)
        return Domain._checked(self.nside // 2, np.unique(self.cell_ids // 4), ascending=True)

    def pyramid(self, n_levels):
        """This domain and its ``n_levels - 1`` coarser levels: ``(self, parent, parent of parent, ...)``.

        Every level is computed once (cached on the finer one), so two callers asking for the
        pyramid of one domain get the same Domain objects.

        Parameters
        ----------
        n_levels : int
            At least 1 and at most ``log2(nside) + 1``.

        Returns
        -------
        tuple of Domain, length ``n_levels``
            Level ``j`` at ``nside // 2**j``.
        """
        n_levels = check_positive_int(n_levels, "n_levels")
        if self.nside >> (n_levels - 1) < 1:
            raise ValueError(f"n_levels={n_levels} needs nside >= {2 ** (n_levels - 1)}, got {self.nside}")
        levels = [self]
        for _ in range(n_levels - 1):
            levels.append(levels[-1].parent())
        return tuple(levels)

    def children(self):
        """The finer domain holding the 4 NESTED children of every cell, in this domain's order;
        the same object at every call."""
        if 2 * self.nside > 2**29:
            raise ValueError("nside 2**29 has no finer level")
        return self._cached("_children", self._make_children)

    def _make_children(self):
        if self.is_full_sky:
            return Domain._checked(2 * self.nside, None, True)
        kids = (self.cell_ids[:, None] * 4 + np.arange(4, dtype=np.int64)).reshape(-1)
        return Domain._checked(2 * self.nside, kids)

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
