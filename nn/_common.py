"""Helpers the networks share (argument checks, the level pyramid, the gauge mean), so that one
network never imports another."""

from foscat_core._validation import check_positive_int


def check_chanlist(chanlist):
    """``chanlist`` as a list of Python ints after checking it is a non-empty list of positive integers."""
    if isinstance(chanlist, (str, bytes)) or not hasattr(chanlist, "__len__") or len(chanlist) == 0:
        raise ValueError(f"chanlist must be a non-empty list of channel counts, got {chanlist!r}")
    try:
        return [check_positive_int(c, "chanlist") for c in chanlist]
    except ValueError:
        raise ValueError(f"chanlist must hold positive integers, got {list(chanlist)!r}") from None


def pyramid(domain, n_levels, asked_by):
    """``domain.pyramid(n_levels)``: the network's levels, each computed once and shared.

    Parameters
    ----------
    domain : Domain
        The input level (the network's ``domain``).
    n_levels : int
    asked_by : str
        What asks for the levels, for the error message, e.g. ``"chanlist has 3 levels, which"``.

    Returns
    -------
    tuple of Domain, length ``n_levels``
        Level ``j`` at ``nside // 2**j``: the input domain, then the sorted NESTED parents.
    """
    if domain.nside >> (n_levels - 1) < 1:
        raise ValueError(f"{asked_by} needs in_nside >= {2 ** (n_levels - 1)}, got {domain.nside}")
    return domain.pyramid(n_levels)


def gauge_mean(xp, h, n_gauges):
    """(B, G*C, N) gauge-major → (B, C, N), the mean over gauges."""
    if n_gauges == 1:
        return h
    c = int(h.shape[1]) // n_gauges
    return xp.mean(xp.reshape(h, (-1, n_gauges, c, int(h.shape[2]))), axis=1)

