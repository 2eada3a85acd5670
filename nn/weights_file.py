"""One portable file per network: a JSON header (format, version, class, config) and the
weights as NumPy arrays under their portable names, in an ``.npz`` written atomically.

Reading checks everything before a network is built: a missing file is a
``FileNotFoundError``; a file that is not such an archive (empty, truncated, bit-flipped, a
``.npy``, random bytes), a header that is not the expected JSON object, or a config key the
class does not take is a ``ValueError`` naming the path and what is wrong. The file is closed
whatever happens.
"""

import inspect
import json

import numpy as np

from foscat_core._files import atomic_write, read_npz

FORMAT = "foscat_core.nn"
VERSION = 2  # 2 added the normalisation states ``data_norm.*``; version 1 files load with none set
READABLE = (1, 2)
_HEADER, _CELLS = "__header__", "__cell_ids__"
_HEADER_KEYS = {"format", "version", "class", "config"}
_PASSED_AT_LOAD = {"cell_ids", "backend", "device"}  # given to the constructor besides the config


def write_weights(path, class_name, config, cell_ids, arrays):
    header = {"format": FORMAT, "version": VERSION, "class": class_name, "config": config}
    payload = {_HEADER: np.asarray(json.dumps(header))}
    if cell_ids is not None:
        payload[_CELLS] = np.asarray(cell_ids, dtype=np.int64)
    payload.update(arrays)
    with atomic_write(path, suffix=".npz") as f:
        np.savez(f, **payload)


def read_weights(path, cls):
    """``(config, cell_ids, arrays, version)`` from a file written for the network class ``cls``.

    Raises ``FileNotFoundError`` when there is no file at ``path`` and ``ValueError`` (naming
    ``path``) when it is not a readable network file for ``cls``.
    """
    contents = read_npz(path, "foscat_core network file")
    if _HEADER not in contents:
        raise ValueError(f"{path} is not a foscat_core network file (no {_HEADER} entry)")
    header = _parse_header(path, contents.pop(_HEADER))
    if header["class"] != cls.__name__:
        raise ValueError(f"{path} holds a {header['class']}, not a {cls.__name__}; load it with that class")
    _check_config(path, header["config"], cls)
    cell_ids = contents.pop(_CELLS, None)
    return header["config"], cell_ids, contents, header["version"]


def _parse_header(path, raw):
    try:
        header = json.loads(str(raw)) if raw.shape == () and raw.dtype.kind == "U" else None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header must be a JSON object, got {raw.dtype} {raw.shape}")
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: format {header.get('format')!r}, this library reads {FORMAT!r}")
    version = header.get("version")
    if type(version) is not int or version not in READABLE:
        raise ValueError(f"{path}: format version {version!r}, this library reads versions {READABLE}")
    if set(header) != _HEADER_KEYS:
        raise ValueError(f"{path}: header keys {sorted(header)}, expected {sorted(_HEADER_KEYS)}")
    if not isinstance(header["config"], dict):
        raise ValueError(f"{path}: the config must be a JSON object, got {type(header['config']).__name__}")
    return header


def _check_config(path, config, cls):
    """Config keys the constructor takes, and every required one: no TypeError from ``cls(**config)``."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(config) - (set(params) - _PASSED_AT_LOAD))
    if unknown:
        raise ValueError(f"{path}: unexpected config keys {unknown} for {cls.__name__}")
    required = {name for name, p in params.items() if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - _PASSED_AT_LOAD
    missing = sorted(required - set(config))
    if missing:
        raise ValueError(f"{path}: config lacks {missing}, required by {cls.__name__}")
