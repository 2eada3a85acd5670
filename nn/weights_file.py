"""One portable file per network: a JSON header (format, version, class, config) and the
weights as NumPy arrays under their portable names, in an ``.npz`` written atomically."""

import json
import os

import numpy as np

from foscat_core._files import atomic_write

FORMAT = "foscat_core.nn"
VERSION = 2  # 2 added the normalisation states ``data_norm.*``; version 1 files load with none set
READABLE = (1, 2)
_HEADER, _CELLS = "__header__", "__cell_ids__"


def write_weights(path, class_name, config, cell_ids, arrays):
    header = {"format": FORMAT, "version": VERSION, "class": class_name, "config": config}
    payload = {_HEADER: np.asarray(json.dumps(header))}
    if cell_ids is not None:
        payload[_CELLS] = np.asarray(cell_ids, dtype=np.int64)
    payload.update(arrays)
    with atomic_write(path, suffix=".npz") as f:
        np.savez(f, **payload)


def read_weights(path, class_name):
    """``(config, cell_ids, arrays, version)`` from a file written for ``class_name``; ValueError
    otherwise."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a foscat_core network file: {err}") from err
    if _HEADER not in contents:
        raise ValueError(f"{path} is not a foscat_core network file (no header)")
    header = json.loads(str(contents.pop(_HEADER)))
    if header.get("format") != FORMAT or header.get("version") not in READABLE:
        raise ValueError(f"{path}: format {header.get('format')!r} version {header.get('version')!r}, "
                         f"this library reads {FORMAT!r} versions {READABLE}")
    if header.get("class") != class_name:
        raise ValueError(f"{path} holds a {header.get('class')}, not a {class_name}; load it with that class")
    cell_ids = contents.pop(_CELLS, None)
    return header["config"], cell_ids, contents, header["version"]
