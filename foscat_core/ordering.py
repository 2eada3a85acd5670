"""RING or NESTED ids at the edge: every public entry point takes healpy's ``nest=`` and turns the
user's ids into the NESTED ids the core works in, keeping the user's order.

Nothing below the edge sees RING: a full-sky RING map is the regional domain
``ring2nest(arange(npix))`` in the user's order, so every output comes back in RING order by the
core's own rule (outputs follow the order of ``cell_ids``).
"""

import numpy as np

from ._validation import check_cell_ids, check_nside
from .domain import Domain, own_ids
from .memory_budget import require_full_sky_ids


def check_nest(nest, name="nest"):
    """``nest`` as a bool: healpy's meaning, ``True`` for NESTED, ``False`` for RING."""
    if not isinstance(nest, (bool, np.bool_)):
        raise TypeError(f"{name} must be True (NESTED ids) or False (RING ids), got {nest!r}")
    return bool(nest)


def nested_cell_ids(nside, cell_ids=None, nest=True, name="cell_ids"):
    """The NESTED ids, in the user's order, of cells given in the ``nest`` ordering.

    Parameters
    ----------
    nside : int
    cell_ids : array_like of int, shape (N,), optional
        Ids in RING (``nest=False``) or NESTED (``nest=True``) order; ``None`` = full sky.
    nest : bool

    Returns
    -------
    ndarray of int64, shape (N,), or None
        ``None`` only for a NESTED full sky; a RING full sky gives ``ring2nest(arange(npix))``,
        so the cell axis stays in RING order.

    Examples
    --------
    >>> nested_cell_ids(2, [0, 4, 13], nest=False)
    array([3, 2, 0])
    >>> nested_cell_ids(2, None, nest=False)[:6]
    array([ 3,  7, 11, 15,  2,  1])
    """
    nside = check_nside(nside)
    if check_nest(nest):
        return None if cell_ids is None else check_cell_ids(cell_ids, nside, name)
    import healpy as hp

    if cell_ids is None:
        require_full_sky_ids(nside, copies=2)  # the RING ids and their NESTED image
    ring = np.arange(12 * nside * nside, dtype=np.int64) if cell_ids is None else check_cell_ids(cell_ids, nside, name)
    return np.asarray(hp.ring2nest(nside, ring), dtype=np.int64)


def as_domain(nside, cell_ids=None, nest=True, name="cell_ids"):
    """The :class:`~foscat_core.domain.Domain` of cells given at the public edge, checked once.

    Parameters
    ----------
    nside : int or Domain
        A Domain is returned as it is (its ids were checked when it was made); ``cell_ids`` must
        then be ``None``.
    cell_ids : array_like of int, shape (N,), optional
        Ids in the ``nest`` ordering, any order (kept); ``None`` = full sky.
    nest : bool
        healpy's meaning. A RING full sky is the regional domain ``ring2nest(arange(npix))``.
    name : str
        Argument name for error messages.

    Returns
    -------
    Domain
        NESTED ids in the user's order.

    Examples
    --------
    >>> d = as_domain(2, [0, 4, 13], nest=False)
    >>> d.cell_ids, as_domain(d) is d
    (array([3, 2, 0]), True)
    """
    if isinstance(nside, Domain):
        if cell_ids is not None:
            raise ValueError(f"{name} must be None when a Domain is given (the Domain holds the cells), "
                             f"got {type(cell_ids).__name__}")
        check_nest(nest)
        return nside
    nside = check_nside(nside)
    if check_nest(nest):
        return Domain(nside) if cell_ids is None else Domain._checked(nside, own_ids(cell_ids, nside, name))
    # ring2nest of unique valid ids is a permutation of unique valid ids: no second check.
    return Domain._checked(nside, nested_cell_ids(nside, cell_ids, False, name))


def user_cell_ids(nside, nested_ids, nest=True):
    """NESTED ids back in the user's ordering (the inverse of :func:`nested_cell_ids`).

    >>> user_cell_ids(2, [3, 4], nest=False)
    array([ 0, 15])
    """
    ids = np.asarray(nested_ids, dtype=np.int64)
    if check_nest(nest):
        return ids
    import healpy as hp

    return np.asarray(hp.nest2ring(check_nside(nside), ids), dtype=np.int64)
