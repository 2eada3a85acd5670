"""Oriented spherical convolution on a HEALPix domain."""

import numpy as np

from foscat_core.backends import resolve_backend

from .._arrays import as_backend_array, check_cells_axis
from ..backends.dtypes import check_backend_dtype
from ..backends.sparse_forms import SparseForms
from .._validation import check_kernel_size, check_nside, check_positive_int
from ..domain import Domain
from ..memory_budget import require_stencil_memory
from ..ordering import as_domain, check_nest, user_cell_ids
from ..xarray_io import cells_last, grid_of, is_dataarray, like
from .cache import stencil_table
from .depthwise import DepthwiseFilter
from .geometry import GAUGE_TYPES


class SphericalStencil:
    """K x K oriented stencils of every cell of a HEALPix domain, and the convolution built on them.

    Parameters
    ----------
    nside : int or Domain
        Power of two, or a :class:`~foscat_core.Domain` (NESTED ids, ``cell_ids`` then ``None``):
        its ids are used as they are, not checked or sorted again.
    kernel_sz : int
        Odd stencil side K; a kernel has P = K*K taps laid out like an image with north up:
        tap ``p = i*K + j``, row ``i`` from north to south, column ``j`` from west to east (in the
        gauge frame; see :mod:`foscat_core.stencils.geometry`).
    cell_ids : array_like of int, shape (N,), optional
        Ids of a regional domain in the ``nest`` ordering, any order (outputs follow it); an
        ``xarray`` ``cell_ids`` coordinate works too. ``None`` = full sky.
    nest : bool
        healpy's meaning: True for NESTED ids, False for RING ids. With RING the cell axis of
        every map is in RING order (a full sky too); the work is done in NESTED ids.
    gauge_type : {"phi", "cosmo"}
        Orientation of the local frame: ``"phi"`` has its first axis east (singular at the
        poles), ``"cosmo"`` is rotated by ``-phi`` in the north and ``+phi`` in the south.
    n_gauges : int
        G frames per cell, gauge ``g`` rotated by ``g*pi/G``.
    backend : str or Backend, optional
        Framework the arrays live in; default: the one set with ``set_backend``.
    dtype : {"float32", "float64"}

    Attributes
    ----------
    cell_ids : ndarray of int64, shape (N,)
        NESTED ids of the cells, in the order of the cell axis.
    user_cell_ids : ndarray of int64, shape (N,)
        The same cells in the ``nest`` ordering.
    index : ndarray of int64, shape (G, N, P, 4)
        Positions in ``cell_ids`` of the 4 interpolation cells of each stencil point.
    weight : ndarray of float64, shape (G, N, P, 4)
        Bilinear weights; each (g, n, p) row sums to 1.

    Examples
    --------
    >>> import numpy as np
    >>> st = SphericalStencil(4, 3, backend="numpy", dtype="float64")
    >>> x = np.random.default_rng(0).normal(size=(2, 1, 192))
    >>> w = np.zeros((1, 1, 9)); w[0, 0, 4] = 1.0   # centre tap only: identity
    >>> bool(np.allclose(st.conv(x, w), x))
    True
    """

    def __init__(self, nside, kernel_sz, *, cell_ids=None, nest=True, gauge_type="phi", n_gauges=1, backend=None,
                 dtype="float32"):
        self.nest = check_nest(nest)
        self.kernel_sz = check_kernel_size(kernel_sz)
        self.n_points = self.kernel_sz**2
        if gauge_type not in GAUGE_TYPES:
            raise ValueError(f"gauge_type must be one of {GAUGE_TYPES}, got {gauge_type!r}")
        self.gauge_type = gauge_type
        self.n_gauges = check_positive_int(n_gauges, "n_gauges")
        self.backend = resolve_backend(backend)
        self.dtype = check_backend_dtype(dtype, self.backend)
        if cell_ids is None and not isinstance(nside, Domain):  # refused before the full sky's ids are made
            nside = check_nside(nside)
            require_stencil_memory(nside, 12 * nside * nside, self.kernel_sz, self.n_gauges)
        self.domain = as_domain(nside, cell_ids, self.nest)
        self.nside = self.domain.nside
        if cell_ids is not None or isinstance(nside, Domain):
            require_stencil_memory(self.nside, self.n_cells, self.kernel_sz, self.n_gauges)
        self.index, self.weight = stencil_table(self.domain, self.kernel_sz, gauge_type, self.n_gauges)
        self._operators = None
        self._depthwise = None

    def filter(self, maps, bank):
        """Filter every single-channel map with every kernel of a bank (a depthwise ``conv``).

        Interpolates each map at the stencil points once, then applies the whole bank as one
        dense product: much less work than ``conv`` when many maps share a few kernels (the
        scattering operator's wavelets). Gauge 0 only.

        Parameters
        ----------
        maps : array, shape (L, N)
            Real maps on the stencil's cells: NumPy data (converted to the stencil's dtype) or a
            tensor of the stencil's backend with its dtype (never cast). ``L = 0`` gives an empty
            result.
        bank : array, shape (C, P), C >= 1
            Kernel ``c`` over the P = K*K taps, laid out as in :meth:`conv`; same rules as ``maps``.

        Returns
        -------
        native array, shape (L, C, N)
            ``out[l, c] == conv(maps[:, None], bank[None])[l, c]`` up to rounding.

        Raises
        ------
        TypeError
            ``maps`` or ``bank`` is complex, not numeric, of another framework or another dtype.
        ValueError
            A shape other than the ones above.

        Examples
        --------
        >>> import numpy as np
        >>> st = SphericalStencil(2, 3, backend="numpy", dtype="float64")
        >>> bank = np.zeros((2, 9)); bank[0, 4] = 1.0; bank[1, 4] = 2.0   # centre taps
        >>> maps = np.random.default_rng(0).normal(size=(3, 48))
        >>> out = st.filter(maps, bank)
        >>> out.shape, bool(np.allclose(out[:, 1], 2 * maps))
        ((3, 2, 48), True)
        """
        maps = as_backend_array(self.backend, maps, "maps", self.dtype)
        bank = as_backend_array(self.backend, bank, "bank", self.dtype)
        if len(maps.shape) != 2 or maps.shape[1] != self.n_cells:
            raise ValueError(f"maps must have shape (L, {self.n_cells}): L maps on the stencil's cells at "
                             f"nside={self.nside}, got shape {tuple(maps.shape)}")
        if len(bank.shape) != 2 or bank.shape[1] != self.n_points or bank.shape[0] == 0:
            raise ValueError(f"bank must have shape (C, {self.n_points}): C >= 1 kernels of K*K={self.n_points} taps, "
                             f"got shape {tuple(bank.shape)}")
        if self._depthwise is None:
            self._depthwise = DepthwiseFilter(self)
        return self._depthwise.filter(maps, bank)

    def __getstate__(self):
        # Operators are rebuilt on first use; copies of other devices are not carried along.
        state = dict(self.__dict__)
        state.update(_operators=None, _depthwise=None)
        state.pop("_fc_clones", None)
        state.pop("_dtype_clones", None)
        return state

    def on_backend(self, backend):
        """The same stencil (shared tables) on another backend or device; operators rebuilt on use."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.backend = resolve_backend(backend)
        clone._operators = None
        clone._depthwise = None
        clone.__dict__.pop("_dtype_clones", None)  # those are copies on this stencil's device
        return clone

    def with_dtype(self, dtype):
        """The same stencil (shared geometry tables, which stay float64 on the host) with its
        operators in ``dtype``, built on use; one copy per dtype, which every copy shares, so
        layers sharing a stencil still share it after a network is cast (``net.bfloat16()``)."""
        dtype = check_backend_dtype(dtype, self.backend)
        clones = self.__dict__.setdefault("_dtype_clones", {})
        clones.setdefault(self.dtype, self)
        if dtype not in clones:
            clone = object.__new__(type(self))
            clone.__dict__.update(self.__dict__)  # (the same _dtype_clones table)
            clone.__dict__.pop("_fc_clones", None)  # copies on other devices keep their own dtype
            clone.dtype, clone._operators, clone._depthwise = dtype, None, None
            clones[dtype] = clone
        return clones[dtype]

    @property
    def cell_ids(self):
        return self.domain.cell_ids

    @property
    def user_cell_ids(self):
        return user_cell_ids(self.nside, self.domain.cell_ids, self.nest)

    @property
    def n_cells(self):
        return self.domain.n_cells

    def __repr__(self):
        return (f"SphericalStencil(nside={self.nside}, kernel_sz={self.kernel_sz}, {self.domain!r}, "
                f"nest={self.nest}, gauge_type={self.gauge_type!r}, n_gauges={self.n_gauges}, backend={self.backend.name!r}, "
                f"dtype={self.dtype!r})")

    def operators(self):
        """Per-gauge sparse operators (N, N*P) on the backend, built on first use."""
        if self._operators is None:
            self._operators = [
                self.backend.sparse_operator(SparseForms.from_taps(self.index[g], self.weight[g], self.dtype), self.dtype)
                for g in range(self.n_gauges)]
        return self._operators

    def conv(self, x, w):
        """Convolve maps with oriented K x K kernels.

        Parameters
        ----------
        x : array or xarray.DataArray, shape (B, C_in, N)
            Maps on the stencil's cells, in ``cell_ids`` order. A DataArray (xdggs convention,
            see :mod:`foscat_core.xarray_io`) must be on the stencil's grid: same nside, same
            cells in the same order; its cell dimension (the one carrying ``cell_ids``) may be
            anywhere and is moved last, the other two dims are taken as (B, C_in) in their order.
            Real values; ``C_in >= 1``; ``B = 0`` gives an empty result on every backend.
        w : array, shape (C_in, C_out, P) or, with G gauges, (C_in, C_out_g, P) shared by all
            gauges or (G, C_in, C_out_g, P) one kernel per gauge; real, ``C_out >= 1``.

        Returns
        -------
        array or xarray.DataArray, shape (B, C_out, N) or (B, G*C_out_g, N)
            ``y[b, o, n] = sum_{c, p} w[c, o, p] * x_interp[b, c, n, p]`` where ``x_interp`` is ``x``
            interpolated at stencil point p of cell n. With G gauges, channels are gauge-major:
            channel ``g*C_out_g + o`` is kernel o applied in gauge g's frame. For a DataArray: a
            NumPy-backed DataArray with the input's dims in their order, its coordinates and
            attributes (a coordinate of the channel dim is dropped when C_out != C_in).

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> from foscat_core.xarray_io import cell_coordinate
        >>> st = SphericalStencil(2, 3, nest=False, backend="numpy", dtype="float64")
        >>> x = xr.DataArray(np.ones((2, 48, 1)), dims=("time", "cells", "band"),
        ...                  coords={"cell_ids": cell_coordinate(2, np.arange(48), nest=False)})
        >>> y = st.conv(x, np.full((1, 3, 9), 1 / 9))   # "time" is B, "band" is C_in
        >>> y.dims, y.sizes["band"], round(float(y.max()), 6)
        (('time', 'cells', 'band'), 3, 1.0)
        """
        if is_dataarray(x):
            return self._conv_dataarray(x, w)
        bk, xp = self.backend, self.backend.xp
        # Under a mixed-precision context (torch.autocast) tensors of any float dtype are taken,
        # as torch's own convolutions take them: the backend computes in the context's dtype.
        dtype = None if _autocasting(bk) and bk.is_native(x) else self.dtype
        x = as_backend_array(bk, x, "x", dtype)
        w = as_backend_array(bk, w, "w", None if dtype is None and bk.is_native(w) else self.dtype)
        if len(x.shape) != 3:
            raise ValueError(f"x must have shape (B, C_in, N), got shape {tuple(x.shape)}")
        check_cells_axis(x, self.n_cells, "x", f"the stencil's domain at nside={self.nside}")
        c_in = int(x.shape[1])
        if len(w.shape) == 4:
            if int(w.shape[0]) != self.n_gauges:
                raise ValueError(f"w of shape (G, C_in, C_out, P) must have G={self.n_gauges}, got {tuple(w.shape)}")
            per_gauge = [w[g] for g in range(self.n_gauges)]
        elif len(w.shape) == 3:
            per_gauge = [w] * self.n_gauges
        else:
            raise ValueError(f"w must have shape (C_in, C_out, P) or (G, C_in, C_out, P), got {tuple(w.shape)}")
        c_w, c_out, n_taps = (int(s) for s in per_gauge[0].shape)
        if c_in == 0:
            raise ValueError(f"x must have at least one input channel, got shape {tuple(x.shape)}")
        if c_out == 0:
            raise ValueError(f"w must have at least one output channel (C_out >= 1), got shape {tuple(w.shape)}")
        if c_w != c_in:
            raise ValueError(f"w has {c_w} input channels but x has {c_in} (w shape {tuple(w.shape)}, x shape {tuple(x.shape)})")
        if n_taps != self.n_points:
            raise ValueError(f"w must have P={self.n_points} taps (K={self.kernel_sz}) on its last axis, got {n_taps}")
        xt = xp.permute_dims(x, (0, 2, 1))
        outs = []
        for wg, op in zip(per_gauge, self.operators()):
            wr = xp.reshape(xp.permute_dims(wg, (0, 2, 1)), (c_in, self.n_points * c_out))
            outs.append(bk.stencil_contract(xt, wr, op))
        y = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
        return xp.permute_dims(y, (0, 2, 1))

    def _conv_dataarray(self, x, w):
        grid = grid_of(x, "x")
        if grid.nside != self.nside or not np.array_equal(grid.nested_ids, self.cell_ids):
            raise ValueError(
                f"x's grid (nside {grid.nside}, {grid.cell_ids.size} cells, nest={grid.nest}) must be the stencil's "
                f"(nside {self.nside}, {self.n_cells} cells, nest={self.nest}): the same cells in the same order; "
                "build the stencil from it, e.g. SphericalStencil(nside, K, cell_ids=x.cell_ids, nest=...)"
            )
        if x.ndim != 3:
            raise ValueError(f"x must have 3 dims (B, C_in, cells), got dims {x.dims}")
        values, dims = cells_last(x, grid.cell_dim)
        return like(x, self.backend.to_numpy(self.conv(values, w)), grid.cell_dim, dims=dims)

    Convol_torch = conv
    __call__ = conv


def _autocasting(backend):
    """True inside the framework's mixed-precision context (only torch's backend has one)."""
    amp = getattr(backend, "autocast_dtype", None)
    return amp is not None and amp() is not None
