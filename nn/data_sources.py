"""Where ``fit`` and ``predict`` read their samples from, one batch at a time.

Two kinds of source:

- **arrays** (the samples along the first axis): NumPy arrays and framework tensors are taken
  whole (they are in memory already) and validated once; ``xarray.DataArray`` maps and other
  lazy arrays (dask, zarr) are read batch by batch (``isel``/slicing, then ``.values``), never
  whole. Array sources are shuffled each epoch by ``fit``.
- **iterables** of batches: ``(x, y)`` pairs or ``(x, y, w)`` triples for training (``x``
  alone, or a tuple whose first item is ``x``, for ``predict``): a torch ``DataLoader``, a
  ``tf.data.Dataset``, a list, any object with ``__iter__``, or a function of no argument that
  returns a fresh iterator (e.g. a generator function). Read in their own order and batching.

A DataArray's cell dimension is the one carrying the ``cell_ids`` coordinate; its cells must be
the network's (same nside and set of cells; another order is put back in the network's order).
Of its other dimensions, the first is the sample dimension and the second, if any, the channel
dimension (a DataArray with none has one channel).
"""

import numbers

import numpy as np

from foscat_core.xarray_io import grid_of, is_dataarray


def to_host(backend, x, name):
    """One array (or batch) as a NumPy array of numbers; NaN is kept, ±inf is an error."""
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if backend.is_native(x):
        x = backend.to_numpy(x)
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers: {err}") from err
    if x.dtype == np.bool_:
        x = x.astype(np.float64)  # masks and binary labels
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and np.any(np.isinf(x)):
        raise ValueError(f"{name} contains infinite values")
    return x


def network_cells(net):
    """The network's NESTED cell ids, in the order of its cell axis, shape (N_cells,)."""
    ids = net.nested_ids  # None only for a NESTED full sky
    return np.arange(net.n_cells, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)


def is_lazy_array(x):
    """A DataArray, or an array-like read by slicing (dask, zarr, h5py, another framework's tensor)."""
    if is_dataarray(x):
        return True
    return not isinstance(x, (np.ndarray, list, tuple)) and all(hasattr(x, a) for a in ("shape", "ndim", "__getitem__"))


class LazyArray:
    """Samples of a lazy array read one batch at a time: ``take(idx) -> ndarray``.

    For a DataArray the batch comes as (B, C, N_cells), cells in the network's order, and
    ``dims``/``perm`` say how to put an answer back (``perm`` None when the order is the same).
    """

    def __init__(self, x, net, name, has_cells=True):
        self.name, self.source, self.perm, self.dims = name, x, None, None
        if is_dataarray(x) and (has_cells or "cell_ids" in x.coords):
            self._init_dataarray(x, net, name)
        else:
            if len(x.shape) == 0:
                raise ValueError(f"{name} must have a sample axis first, got a scalar")
            self.data, self.shape = x, tuple(int(s) for s in x.shape)

    def _init_dataarray(self, da, net, name):
        grid = grid_of(da, name)
        if grid.nside != net.in_nside:
            raise ValueError(f"{name} is on a grid of nside {grid.nside}, the network's is in_nside={net.in_nside}")
        ids, want = grid.nested_ids, network_cells(net)
        if len(ids) != len(want) or not np.array_equal(np.sort(ids), np.sort(want)):
            raise ValueError(f"{name}'s {len(ids)} cells are not the network's {len(want)} cells "
                             "(build the network on this DataArray's grid, e.g. with from_grid)")
        if not np.array_equal(ids, want):
            self.perm = np.argsort(ids)[np.searchsorted(np.sort(ids), want)]  # ids[perm] == want
        other = [d for d in da.dims if d != grid.cell_dim]
        if not 1 <= len(other) <= 2:
            raise ValueError(f"{name} must have dims (sample, [channel,] cells), got dims {da.dims}: "
                             f"the first dim other than {grid.cell_dim!r} is the sample dim, the next the channel dim")
        self.grid, self.cell_dim = grid, grid.cell_dim
        self.sample_dim, self.channel_dim = other[0], (other[1] if len(other) == 2 else None)
        self.dims = tuple(other) + (grid.cell_dim,)
        self.data = da.transpose(*self.dims)  # lazy: no data is read here
        sizes = [int(da.sizes[d]) for d in self.dims]
        self.shape = (sizes[0], 1, sizes[-1]) if self.channel_dim is None else tuple(sizes)

    def __len__(self):
        return self.shape[0]

    def take(self, idx):
        """Samples ``idx`` (a slice, or sorted int64 indices) as NumPy."""
        if self.dims is None:
            if not isinstance(idx, slice) and hasattr(self.data, "oindex"):
                return np.asarray(self.data.oindex[idx])  # zarr: orthogonal selection
            return np.asarray(self.data[idx])
        batch = self.data.isel({self.sample_dim: idx})
        if self.perm is not None:
            batch = batch.isel({self.cell_dim: self.perm})
        values = np.asarray(batch.values)
        return values[:, None, :] if self.channel_dim is None else values


def check_sample_count(x, n_samples, name, other):
    n = len(x) if isinstance(x, LazyArray) else int(x.shape[0])
    if n != n_samples:
        raise ValueError(f"{name} has {n} samples but {other} has {n_samples}")


def as_weight_array(w, n_samples, target_shape, name):
    """``sample_weight`` (N,) or broadcastable to (N, *target_shape) → float64 (N or 1, ...) with
    the targets' number of dimensions; finite and >= 0. (N,) always means one weight per sample."""
    if isinstance(w, numbers.Number):
        raise TypeError(f"{name} must be an array of shape ({n_samples},) or broadcastable to "
                        f"{(n_samples, *target_shape)}, got the scalar {w!r}")
    w = np.asarray(w.values if is_dataarray(w) else w, dtype=np.float64)
    full = (n_samples, *target_shape)
    if w.ndim == 1 and w.shape[0] == n_samples:
        w = w.reshape((n_samples,) + (1,) * len(target_shape))
    else:
        try:
            ok = np.broadcast_shapes(w.shape, full) == full
        except ValueError:
            ok = False
        if not ok or w.ndim > len(full):
            raise ValueError(f"{name} must have shape ({n_samples},) or be broadcastable to {full}, got shape {w.shape}")
        w = w.reshape((1,) * (len(full) - w.ndim) + w.shape)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return w


def take_weights(w, idx):
    """The weights of samples ``idx`` (a weight shared by every sample stays as it is)."""
    return w if w is None or w.shape[0] == 1 else w[idx]


class IterableSource:
    """Batches of a re-iterable source (or of a function returning a fresh iterator)."""

    def __init__(self, source, name, n_epoch):
        if isinstance(source, (np.ndarray, str, bytes)) or (not callable(source) and not hasattr(source, "__iter__")):
            raise TypeError(f"{name} must be an array, a DataArray or an iterable of batches, got {type(source).__name__}")
        if n_epoch > 1 and not callable(source) and hasattr(source, "__next__"):  # an iterator: read once
            raise ValueError(f"{name} is a one-shot iterator (e.g. a generator), which cannot be read again for "
                             f"each of the {n_epoch} epochs: pass a re-iterable (a list, a DataLoader, a "
                             "tf.data.Dataset, an object with __iter__) or the generator function itself")
        self.source, self.name = source, name

    def __iter__(self):
        return iter(self.source() if callable(self.source) else self.source)


def host_inputs(net, x, name):
    """Inputs ``x`` (N, C_in, N_cells) as host float arrays of the network's dtype, checked: NaN
    only with ``net.mask_missing`` (missing cells), never ±inf."""
    x = to_host(net.backend, x, name)
    if x.ndim != 3 or x.shape[1] != net.n_chan_in or x.shape[2] != net.n_cells:
        raise ValueError(f"{name} must have shape (N, {net.n_chan_in}, {net.n_cells}), got {x.shape}")
    if not net.mask_missing and np.issubdtype(x.dtype, np.floating) and np.isnan(x).any():
        raise ValueError(f"{name} contains NaN; build the network with mask_missing=True to treat NaN inputs "
                         "as missing cells")
    return x.astype(net.dtype, copy=False)


def check_label_range(net, y, name):
    """Segmentation targets are probabilities: values in [0, 1] (NaN: unlabelled)."""
    if net.task == "segmentation" and np.issubdtype(y.dtype, np.floating):
        labelled = y[~np.isnan(y)]
        if labelled.size and (labelled.min() < 0 or labelled.max() > 1):
            raise ValueError(f"{name}: segmentation targets must be in [0, 1] (or NaN for unlabelled cells), "
                             f"got values in [{labelled.min()}, {labelled.max()}]")
    elif net.task == "segmentation" and net.out_channels == 1 and y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"{name}: binary segmentation labels must be in [0, 1], got values in [{y.min()}, {y.max()}]")
