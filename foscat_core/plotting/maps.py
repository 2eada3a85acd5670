"""``show_map`` and ``show_maps``: HEALPix maps drawn by the rasteriser into ordinary Axes."""

import numpy as np
import healpy as hp
import matplotlib

from foscat_core.ordering import nested_cell_ids
from foscat_core.xarray_io import cells_last, is_dataarray, resolve_grid

from ._common import finish, new_figure, to_host
from .raster import DEFAULT_XSIZE, choose_view, grid_for, mollweide_forward, prepare_domain, prepare_field, \
    rasterise


def _colormap(cmap):
    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return cm.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # cells outside the domain stay blank


def _limits(values_list, vmin, vmax):
    finite = [v[np.isfinite(v)] for v in values_list]
    finite = [f for f in finite if f.size]
    lo = float(min(f.min() for f in finite)) if finite else 0.0
    hi = float(max(f.max() for f in finite)) if finite else 1.0
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _check_xsize(xsize, view):
    if xsize is None:
        return DEFAULT_XSIZE[view.projection]
    if isinstance(xsize, bool) or not isinstance(xsize, (int, np.integer)) or not 16 <= xsize <= 8192:
        raise ValueError(f"xsize must be an integer in [16, 8192] (image width in pixels), got {xsize!r}")
    return int(xsize)


def _graticule(ax):
    """Meridians every 60 degrees, parallels every 30 degrees and the outline of the ellipse."""
    style = dict(color="0.6", lw=0.5, zorder=2)
    lat = np.linspace(-np.pi / 2, np.pi / 2, 181)
    for lon_deg in range(-180, 181, 60):
        x, y = mollweide_forward(np.full_like(lat, np.radians(lon_deg)), lat)
        ax.plot(x, y, **(dict(style, color="0.2", lw=0.8) if abs(lon_deg) == 180 else style))
    lon = np.linspace(-np.pi, np.pi, 361)
    for lat_deg in (-60, -30, 0, 30, 60):
        x, y = mollweide_forward(lon, np.full_like(lon, np.radians(lat_deg)))
        ax.plot(x, y, **style)


def _draw(ax, field, view, grid, cmap, vmin, vmax, graticule):
    image = np.ma.masked_invalid(rasterise(field, grid))
    extent = grid[3]
    im = ax.imshow(image, origin="upper", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest", zorder=1)
    ax.set_aspect("equal")
    if view.projection == "mollweide":
        ax.set_xlim(-2.02, 2.02)
        ax.set_ylim(-1.02, 1.02)
        ax.set_axis_off()
        if graticule:
            _graticule(ax)
    else:
        theta, phi = hp.vec2ang(view.centre)
        lon = (np.degrees(phi[0]) + 180.0) % 360.0 - 180.0
        ax.set_xlabel(f"east offset (deg) from lon {lon:.1f}")
        ax.set_ylabel(f"north offset (deg) from lat {90.0 - np.degrees(theta[0]):.1f}")
        ax.tick_params(labelsize=8)
        if graticule:
            ax.plot([0.0], [0.0], "+", color="0.3", ms=8, zorder=2)
    return im


def _edge(maps, nside, cell_ids, nest, name):
    """Maps (NumPy) and the NESTED ids of their cell axis from the user's grid arguments or DataArrays.

    A RING map (``nest=False``) is drawn as the NESTED domain ``ring2nest(ids)`` in the user's order.
    """
    if not any(is_dataarray(m) for m in maps):
        if nside is None:
            raise TypeError("nside is required (it is optional only for xarray.DataArray maps)")
        return list(maps), nside, nested_cell_ids(nside, cell_ids, True if nest is None else nest)
    out, grid = [], None
    for i, m in enumerate(maps):
        label = name if len(maps) == 1 else f"{name}[{i}]"
        if not is_dataarray(m):
            raise TypeError(f"{label} must be an xarray.DataArray like the other maps, got {type(m).__name__}")
        g = resolve_grid(m, nside, cell_ids, nest, label)
        if grid is not None and (g.nside != grid.nside or not np.array_equal(g.nested_ids, grid.nested_ids)):
            raise ValueError(f"{label} is not on the same cells, in the same order, as {name}[0]")
        grid = grid or g
        out.append(cells_last(m, g.cell_dim)[0])
    return out, grid.nside, grid.nested_ids


def _figsize(view, nrows=1, ncols=1):
    w, h = (6.4, 3.8) if view.projection == "mollweide" else (5.0, 4.6)
    return (w * ncols, h * nrows)


def show_map(values, nside=None, cell_ids=None, *, nest=None, projection="auto", title=None, cmap="viridis", vmin=None,
             vmax=None, ax=None, colorbar=True, unit=None, xsize=None, graticule=True, show=False):
    """Draw one HEALPix map (full sky or regional) by rasterising it into a matplotlib Axes.

    Every image pixel is mapped back to the sphere and takes the value of the HEALPix cell it
    falls in; pixels with no cell of the map (outside a regional domain, outside the Mollweide
    ellipse) are NaN, masked and drawn blank. Orientation follows the geographic convention:
    north up and **east (increasing longitude phi) to the right**, longitude 0 at the centre of a
    Mollweide map (the astronomical convention, east to the left, is not used).

    Parameters
    ----------
    values : array, tensor or xarray.DataArray, shape (N_cells,)
        The map: a NumPy array, torch tensor or TensorFlow tensor (copied to the host), or a
        DataArray in the xdggs convention, whose ``cell_ids`` coordinate gives ``nside``,
        ``cell_ids`` and ``nest`` (any given must agree). ``N_cells = 12 * nside**2`` for a
        full sky, else ``len(cell_ids)``.
    nside : int
        HEALPix resolution, a power of two; optional for a DataArray.
    cell_ids : array_like of int, shape (N_cells,), optional
        Ids of a regional map in the ``nest`` ordering, any order (``values[i]`` belongs to
        ``cell_ids[i]``).
    nest : bool, optional
        healpy's meaning: True (the default) for NESTED ids and cell axis, False for RING.
    projection : {"auto", "mollweide", "gnomonic"}
        ``"auto"``: Mollweide for a full sky or a region spreading more than 60 degrees from its
        centre, else a gnomonic zoom centred on the region (centre: normalised mean of the cell
        unit vectors; half-width from the largest angular distance of a cell to it).
    title : str, optional
    cmap : str or Colormap
    vmin, vmax : float, optional
        Colour limits; default the finite minimum and maximum of ``values``.
    ax : matplotlib Axes, optional
        Draw there (composes with any figure layout); default a new figure.
    colorbar : bool
    unit : str, optional
        Colour-bar label.
    xsize : int, optional
        Image width in pixels (Mollweide: 800, gnomonic: 500 by default).
    graticule : bool
        Mollweide: meridians every 60 and parallels every 30 degrees; gnomonic: a cross at the centre.
    show : bool
        Call ``matplotlib.pyplot.show()`` (never done otherwise).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the map; ``fig.axes[0].images[0].get_array()`` is the masked raster.

    Examples
    --------
    >>> import numpy as np, healpy as hp
    >>> from foscat_core import plot
    >>> z = hp.pix2vec(8, np.arange(768), nest=True)[2]           # z = cos(theta), full sky
    >>> fig = plot.show_map(z, nside=8, title="z", unit="cos theta")
    >>> ids = np.arange(64)                                         # a regional patch
    >>> fig = plot.show_map(np.random.default_rng(0).normal(size=64), 8, ids)  # gnomonic zoom
    >>> z_ring = hp.reorder(z, n2r=True)                            # the same map in RING order
    >>> fig = plot.show_map(z_ring, nside=8, nest=False)
    """
    (values,), nside, cell_ids = _edge([values], nside, cell_ids, nest, "values")
    domain = prepare_domain(nside, cell_ids)
    field = prepare_field(values, domain)
    view = choose_view(domain, projection)
    grid = grid_for(view, _check_xsize(xsize, view))
    lo, hi = _limits([field.values], vmin, vmax)
    if ax is None:
        fig = new_figure(_figsize(view))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    im = _draw(ax, field, view, grid, _colormap(cmap), lo, hi, graticule)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        orientation = "horizontal" if view.projection == "mollweide" else "vertical"
        cb = fig.colorbar(im, ax=ax, orientation=orientation, shrink=0.7 if orientation == "horizontal" else 0.9)
        if unit is not None:
            cb.set_label(unit)
    return finish(fig, show)


def _split_maps(maps):
    if is_dataarray(maps):  # one panel per entry of the dim that is not the cell dim
        if maps.ndim != 2:
            raise ValueError(f"maps as a DataArray must have 2 dims (one of them the cell dim), got dims {maps.dims}")
        cell_dim = resolve_grid(maps, name="maps").cell_dim
        other = next(d for d in maps.dims if d != cell_dim)
        return [maps.isel({other: i}) for i in range(maps.sizes[other])]
    if isinstance(maps, (list, tuple)):
        if any(is_dataarray(m) for m in maps):
            return list(maps)
        if len(maps) == 0:
            raise ValueError("maps must hold at least one map, got an empty sequence")
        return [to_host(m, f"maps[{i}]") for i, m in enumerate(maps)]
    arr = to_host(maps, "maps")
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"maps must be a list of (N_cells,) maps or an array of shape (M, N_cells), "
                         f"got shape {arr.shape}")
    return list(arr)


def show_maps(maps, nside=None, cell_ids=None, *, nest=None, titles=None, ncols=None, shared_scale=True, projection="auto",
              cmap="viridis", vmin=None, vmax=None, suptitle=None, unit=None, xsize=None, graticule=True,
              show=False):
    """Several maps of one domain side by side (e.g. input / truth / prediction / residual).

    Parameters
    ----------
    maps : sequence of arrays or tensors of shape (N_cells,), or array of shape (M, N_cells)
        DataArrays too (see :func:`show_map`): a sequence of maps on the same cells, or one
        DataArray with the cell dim and one more (a panel per entry).
    nside : int
        Optional for DataArrays.
    cell_ids : array_like of int, shape (N_cells,), optional
        Shared by every map (see :func:`show_map`).
    nest : bool, optional
        True (the default) for NESTED, False for RING ids and cell axis.
    titles : sequence of str, length M, optional
    ncols : int, optional
        Panels per row; default ``min(M, 2)`` for Mollweide panels, ``min(M, 4)`` for gnomonic ones.
    shared_scale : bool
        One colour scale (the finite range of all maps, or ``vmin``/``vmax``) and one colour bar
        for every panel; otherwise each panel has its own scale and colour bar.
    projection, cmap, unit, xsize, graticule, show
        As in :func:`show_map` (one projection, chosen once, for every panel).
    vmin, vmax : float, optional
    suptitle : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core import plot
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=768); pred = truth + 0.1 * rng.normal(size=768)
    >>> fig = plot.show_maps([truth, pred, pred - truth], 8, titles=["truth", "prediction", "residual"])
    >>> len(fig.axes[0].images)
    1
    """
    arrays, nside, cell_ids = _edge(_split_maps(maps), nside, cell_ids, nest, "maps")
    domain = prepare_domain(nside, cell_ids)
    fields = [prepare_field(a, domain, name=f"maps[{i}]") for i, a in enumerate(arrays)]
    if titles is not None:
        titles = list(titles)
        if len(titles) != len(fields):
            raise ValueError(f"titles must have one entry per map ({len(fields)}), got {len(titles)}")
    view = choose_view(domain, projection)
    if ncols is None:
        ncols = min(len(fields), 2 if view.projection == "mollweide" else 4)
    elif isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = int(min(ncols, len(fields)))
    nrows = -(-len(fields) // ncols)
    grid = grid_for(view, _check_xsize(xsize, view))
    cm = _colormap(cmap)
    fig = new_figure(_figsize(view, nrows, ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    limits = _limits([f.values for f in fields], vmin, vmax) if shared_scale else None
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= len(fields):
            ax.set_visible(False)
            continue
        lo, hi = limits if shared_scale else _limits([fields[i].values], vmin, vmax)
        im = _draw(ax, fields[i], view, grid, cm, lo, hi, graticule)
        if titles is not None:
            ax.set_title(titles[i])
        if not shared_scale:
            cb = fig.colorbar(im, ax=ax, orientation="horizontal" if view.projection == "mollweide" else "vertical",
                              shrink=0.8)
            if unit is not None:
                cb.set_label(unit)
    if shared_scale:
        used = [ax for ax in axes.flat if ax.get_visible()]
        cb = fig.colorbar(im, ax=used, orientation="horizontal" if view.projection == "mollweide" else "vertical",
                          shrink=0.6)
        if unit is not None:
            cb.set_label(unit)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return finish(fig, show)
