"""Rasterise a HEALPix NESTED map (full sky or regional) onto a Mollweide or gnomonic pixel grid.

Each image pixel is mapped back to a point of the sphere, the point to its HEALPix cell
(``healpy.ang2pix(..., nest=True)``), and the cell to its value by a sorted look-up in the
map's ``cell_ids``; pixels outside the domain (or outside the Mollweide ellipse) are NaN.

Orientation (geographic convention): north up, east (increasing longitude ``phi``) to the right.
"""

from dataclasses import dataclass

import healpy as hp
import numpy as np

from foscat_core._validation import check_cell_ids, check_nside

from ._common import to_host

PROJECTIONS = ("auto", "mollweide", "gnomonic")
# "auto" zooms (gnomonic) on a region whose cells lie within this angle of their centre.
AUTO_GNOMONIC_MAX_RADIUS = np.radians(60.0)
# A gnomonic view is never wider than this radius (the projection diverges at 90 degrees).
GNOMONIC_MAX_RADIUS = np.radians(80.0)
DEFAULT_XSIZE = {"mollweide": 800, "gnomonic": 500}


@dataclass
class Field:
    """A validated map: values sorted by cell id; ``ids`` is None for a full sky."""

    nside: int
    ids: object  # sorted int64 ndarray or None
    values: np.ndarray  # float64, same order as ids (or NESTED order for a full sky)


@dataclass
class View:
    """Where to look: a projection and, for gnomonic, the tangent point and half-width."""

    projection: str
    centre: np.ndarray = None  # unit vector
    half_width: float = 0.0  # tangent-plane units (tan of the angle)


def prepare_domain(nside, cell_ids):
    """Validate ``nside`` / ``cell_ids``; return (nside, order, sorted ids) with ids None for a full sky."""
    nside = check_nside(nside)
    if cell_ids is None:
        return nside, None, None
    ids = check_cell_ids(to_host(cell_ids, "cell_ids"), nside)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if ids.size == 12 * nside * nside:
        return nside, order, None  # every cell present: a full sky in a permuted order
    return nside, order, ids


def prepare_field(values, domain, name="values"):
    """A :class:`Field` from a (N_cells,) array/tensor on the domain returned by :func:`prepare_domain`."""
    nside, order, ids = domain
    arr = to_host(values, name)
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}; plot e.g. np.abs({name}) or {name}.real")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    expected = 12 * nside * nside if order is None else order.size
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (N_cells,) = ({expected},), got shape {arr.shape}; "
                         f"pick one map, e.g. {name}{'[0]' * (arr.ndim - 1)}")
    if arr.shape[0] != expected:
        what = f"len(cell_ids) = {expected}" if order is not None else f"12 * nside**2 = {expected} (nside={nside})"
        raise ValueError(f"{name} has {arr.shape[0]} values but the domain has {what} cells")
    arr = arr.astype(np.float64)
    if order is not None:
        arr = arr[order]
    return Field(nside, ids, arr)


def choose_view(domain, projection):
    """The :class:`View` for ``projection`` in {"auto", "mollweide", "gnomonic"} on the domain."""
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    nside, _, ids = domain
    if projection == "mollweide":
        return View("mollweide")
    if ids is None:
        if projection == "auto":
            return View("mollweide")
        ids = np.arange(12 * nside * nside)
    vec = np.stack(hp.pix2vec(nside, ids, nest=True), axis=-1)  # (N, 3)
    mean = vec.mean(axis=0)
    norm = np.linalg.norm(mean)
    if norm < 1e-9:  # a symmetric domain has no centre
        if projection == "auto":
            return View("mollweide")
        centre = np.array([1.0, 0.0, 0.0])
    else:
        centre = mean / norm
    radius = float(np.arccos(np.clip((vec @ centre).min(), -1.0, 1.0)))
    radius += hp.nside2resol(nside)  # the cells' own extent around their centres
    if projection == "auto" and radius > AUTO_GNOMONIC_MAX_RADIUS:
        return View("mollweide")
    return View("gnomonic", centre, 1.02 * np.tan(min(radius, GNOMONIC_MAX_RADIUS)))


# --- pixel grids ----------------------------------------------------------------------------
def mollweide_grid(xsize):
    """Sphere angles of a (xsize // 2, xsize) Mollweide image, row 0 at the north.

    Returns (theta, phi, inside, extent): ``inside`` marks pixels within the ellipse, ``extent``
    the imshow extent (x in [-2, 2], y in [-1, 1]).
    """
    ysize = xsize // 2
    x = (np.arange(xsize) + 0.5) / xsize * 2.0 - 1.0
    y = 1.0 - (np.arange(ysize) + 0.5) / ysize * 2.0
    xx, yy = np.meshgrid(x, y)
    inside = xx * xx + yy * yy <= 1.0
    aux = np.arcsin(np.clip(yy, -1.0, 1.0))  # the auxiliary angle of the projection
    lat = np.arcsin(np.clip((2.0 * aux + np.sin(2.0 * aux)) / np.pi, -1.0, 1.0))
    lon = np.pi * xx / np.maximum(np.cos(aux), 1e-12)  # east (increasing phi) to the right
    theta = np.pi / 2.0 - lat
    phi = np.mod(lon, 2.0 * np.pi)
    return theta, phi, inside, (-2.0, 2.0, -1.0, 1.0)


def mollweide_forward(lon, lat):
    """Image coordinates (x in [-2, 2], y in [-1, 1]) of longitudes in (-pi, pi] and latitudes."""
    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    aux = lat.copy()
    target = np.pi * np.sin(lat)
    for _ in range(30):  # Newton on 2a + sin 2a = pi sin(lat)
        f = 2.0 * aux + np.sin(2.0 * aux) - target
        d = 2.0 + 2.0 * np.cos(2.0 * aux)
        aux = aux - np.where(d > 1e-12, f / np.maximum(d, 1e-12), 0.0)
    return 2.0 * lon * np.cos(aux) / np.pi, np.sin(aux)


def tangent_frame(centre):
    """(east, north) unit vectors of the tangent plane at ``centre`` (a fixed frame at the poles)."""
    east = np.cross([0.0, 0.0, 1.0], centre)
    if np.linalg.norm(east) < 1e-9:
        east = np.array([0.0, 1.0, 0.0])
    east = east / np.linalg.norm(east)
    north = np.cross(centre, east)
    return east, north


def gnomonic_grid(view, xsize):
    """Sphere angles of a (xsize, xsize) gnomonic image centred on ``view.centre``, north up.

    Returns (theta, phi, inside, extent) with every pixel inside and the extent in tangent-plane
    offset expressed in degrees (``degrees(offset)``: the angle from the centre for small offsets).
    """
    h = view.half_width
    u = (np.arange(xsize) + 0.5) / xsize * 2.0 * h - h
    uu, vv = np.meshgrid(u, u[::-1])  # row 0 at the top (north)
    east, north = tangent_frame(view.centre)
    p = view.centre[None, None, :] + uu[..., None] * east + vv[..., None] * north
    theta, phi = hp.vec2ang(p.reshape(-1, 3))
    e = np.degrees(h)
    inside = np.ones(uu.shape, dtype=bool)
    return theta.reshape(uu.shape), phi.reshape(uu.shape), inside, (-e, e, -e, e)


def grid_for(view, xsize):
    if view.projection == "mollweide":
        return mollweide_grid(xsize)
    return gnomonic_grid(view, xsize)


def rasterise(field, grid):
    """The (ny, nx) float64 image of ``field`` on ``grid``: NaN where there is no cell of the map."""
    theta, phi, inside, _ = grid
    image = np.full(theta.shape, np.nan)
    pix = hp.ang2pix(field.nside, theta[inside], phi[inside], nest=True)
    if field.ids is None:
        image[inside] = field.values[pix]
        return image
    idx = np.minimum(np.searchsorted(field.ids, pix), field.ids.size - 1)
    hit = field.ids[idx] == pix
    sub = np.full(pix.shape, np.nan)
    sub[hit] = field.values[idx[hit]]
    image[inside] = sub
    return image
