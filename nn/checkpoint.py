"""Resumable training checkpoints of ``fit``: one ``.npz`` written atomically after every epoch.

It holds the network's variables (weights, batch-norm running statistics and the data
normalisation, which are states of the network), the optimiser's state, the number of epochs
done, the shuffling generator's state, the history, the early-stopping state (with the best
weights so far) and the network's class and config, checked when resuming.
"""

import json
import os

import numpy as np

from foscat_core._files import atomic_write, read_npz

FORMAT = "foscat_core.checkpoint"
VERSION = 1
_HEADER = "__header__"


def write_checkpoint(path, net, optimizer, state, best_weights=None):
    """Write ``net``'s variables, ``optimizer``'s state and the JSON-able ``state`` dict."""
    header = {"format": FORMAT, "version": VERSION, "class": type(net).__name__, "config": net.config, **state}
    payload = {_HEADER: np.asarray(json.dumps(header))}
    payload.update({"w/" + name: net.backend.to_numpy(v) for name, v in net.named_variables()})
    payload.update({"opt/" + key: value for key, value in optimizer.state_arrays().items()})
    if best_weights is not None:
        payload.update({"best/" + name: value for name, value in best_weights.items()})
    with atomic_write(path, suffix=".npz") as f:
        np.savez(f, **payload)


def read_checkpoint(path, net):
    """``(state, weights, optimizer_arrays, best_weights or None)`` from a checkpoint of ``net``'s
    architecture and config; FileNotFoundError if absent, ValueError if it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist: nothing to resume (resume=False starts afresh)")
    contents = read_npz(path, "foscat_core checkpoint")
    try:
        header = json.loads(str(contents.pop(_HEADER)))
    except (KeyError, ValueError) as err:
        raise ValueError(f"checkpoint {path!r} is not a foscat_core checkpoint: {err}") from err
    if not isinstance(header, dict):
        raise ValueError(f"checkpoint {path!r}: the header must be a JSON object")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"checkpoint {path!r}: format {header.get('format')!r} version {header.get('version')!r}, "
                         f"this library reads {FORMAT!r} version {VERSION}")
    if header.get("class") != type(net).__name__ or header.get("config") != json.loads(json.dumps(net.config)):
        raise ValueError(f"checkpoint {path!r} was written by a {header.get('class')} with config {header.get('config')}, "
                         f"not this {type(net).__name__} with config {net.config}")
    parts = {"w": {}, "opt": {}, "best": {}}
    for key, value in contents.items():
        kind, name = key.split("/", 1)
        parts[kind][name] = value
    return header, parts["w"], parts["opt"], parts["best"] or None


def host_weights(net):
    """A host copy of every variable of ``net`` (``{portable_name: ndarray}``)."""
    return {name: np.array(net.backend.to_numpy(v)) for name, v in net.named_variables()}


def assign_weights(net, arrays, path, keep_prefix=None):
    """Assign ``{portable_name: ndarray}`` to ``net``'s variables, names and shapes checked;
    variables under ``keep_prefix`` (e.g. ``"data_norm."`` for an older file) keep their values."""
    expected = {name: v for name, v in net.named_variables()
                if keep_prefix is None or not name.startswith(keep_prefix)}
    if set(expected) != set(arrays):
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        raise ValueError(f"{path}: weights do not match {type(net).__name__} (missing {missing[:5]}, unexpected {extra[:5]})")
    for name, variable in expected.items():
        if tuple(arrays[name].shape) != tuple(int(s) for s in variable.shape):
            raise ValueError(f"{path}: {name} has shape {arrays[name].shape}, expected {tuple(variable.shape)}")
    for name, variable in expected.items():
        net.fw.assign(variable, arrays[name])
