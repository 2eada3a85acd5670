"""Batched inference behind :meth:`Network.predict`: arrays, lazy arrays and DataArrays read
batch by batch, iterables of batches; a DataArray in gives a DataArray out."""

import numpy as np

from foscat_core.xarray_io import is_dataarray, like

from .data_sources import IterableSource, LazyArray, is_lazy_array
from .training import eval_mode, network_lock


def predict(net, x, batch_size, keep_missing):
    """``(N, C_out, N_cells)`` NumPy predictions of ``x`` (a DataArray for a DataArray)."""
    if not isinstance(keep_missing, bool):
        raise TypeError(f"keep_missing must be True or False, got {keep_missing!r}")
    source = _source(net, x)
    outs, seen = [], np.zeros(net.n_cells, dtype=bool)  # seen: cells with a value somewhere
    with network_lock(net), eval_mode(net):
        run = net._evaluator()
        for xb in _batches(net, source, batch_size):
            outs.append(net.backend.to_numpy(run(net._batch(xb))))
            seen |= ~np.all(np.isnan(xb), axis=(0, 1))
    if outs:
        values = np.concatenate(outs, axis=0)
    else:
        values = np.zeros((0, net.out_channels, net.n_cells), dtype=net.dtype)
    if keep_missing and values.ndim == 3:
        values[..., ~seen] = np.nan  # missing in every channel of every sample: land, not clouds
    if isinstance(source, LazyArray) and source.dims is not None:
        return _as_dataarray(source, values)
    return values


def _source(net, x):
    if is_lazy_array(x):
        view = LazyArray(x, net, "x")
        if len(view.shape) != 3 or view.shape[1:] != (net.n_chan_in, net.n_cells):
            raise ValueError(f"x must have shape (N, {net.n_chan_in}, {net.n_cells}), got {view.shape}")
        return view
    if isinstance(x, np.ndarray) or net.backend.is_native(x) or isinstance(x, list) and _is_nested_numbers(x):
        return net._host_inputs(x, "x")
    return IterableSource(x, "x", n_epoch=1)


def _is_nested_numbers(x):
    while isinstance(x, list) and x:
        x = x[0]
    return not isinstance(x, list) and np.isscalar(x)


def _batches(net, source, batch_size):
    if isinstance(source, IterableSource):
        for i, item in enumerate(source):
            xb = item[0] if isinstance(item, (tuple, list)) else item
            yield net._host_inputs(xb, f"x batch {i}")
        return
    for start in range(0, len(source), batch_size):
        if isinstance(source, LazyArray):
            yield net._host_inputs(source.take(slice(start, start + batch_size)), "x")
        else:
            yield source[start:start + batch_size]


def _as_dataarray(view, values):
    """Predictions (N, C_out, N_cells) [(N, C_out) pooled] back into the input DataArray's form:
    its sample and cell dims and order, the channel dim keeping its name (its coordinate dropped
    if the size changed; ``"channel"`` when the input had none and C_out > 1)."""
    if view.perm is not None and values.ndim == 3:
        values = values[..., np.argsort(view.perm)]  # back to the DataArray's cell order
    template = view.source
    channel = view.channel_dim or "channel"
    if values.ndim == 2:  # pooled: one row per sample, no cell axis
        return like(template, values, view.cell_dim, dims=(view.sample_dim, channel))
    if view.channel_dim is None and values.shape[1] == 1:
        return like(template, values[:, 0], view.cell_dim, dims=(view.sample_dim, view.cell_dim))
    out = like(template, values, view.cell_dim, dims=(view.sample_dim, channel, view.cell_dim))
    return out if view.channel_dim is not None else out.transpose(view.sample_dim, channel, ...)
