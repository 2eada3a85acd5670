"""Statistics files: one ``.npz`` with the coefficients, their layout and the operator settings,
written atomically; read back onto the backend they came from."""

import json
import os

import numpy as np

from foscat_core._files import atomic_write, read_npz
from foscat_core.backends import resolve_backend

from .compat import BackendCompat
from .settings import OperatorSettings

ORDER = ("S0", "S1", "S2", "S3", "S3P", "S4")
FORMAT = "foscat_core.scattering/2"
OLD_FORMATS = ("foscat_core.scattering/1",)  # no settings: loaded with unknown settings


def write_statistics(stats, path):
    """What :meth:`ScatteringStatistics.save` writes."""
    path = os.fspath(path)
    arrays = {f"coef_{n}": stats.backend.to_numpy(a) for n, a in stats._c.items()}
    settings = None if stats._settings is None else stats._settings.as_dict()
    arrays.update(format=np.array(FORMAT), complex=np.array(sorted(stats._complex), dtype="U8"),
                  j2_j3=stats.j2_j3, j1_j2_j3=stats.j1_j2_j3, cross=np.array(stats.cross),
                  norm=np.array("" if stats.norm is None else stats.norm), backend=np.array(stats.backend.name),
                  settings=np.array(json.dumps(settings)))
    with atomic_write(path, suffix=".npz") as fh:
        np.savez(fh, **arrays)


def read_statistics(cls, path, backend):
    """What :meth:`ScatteringStatistics.load` reads (``cls``: the class to build)."""
    data = read_npz(path, "scattering statistics file")
    try:
        host, fields, backend = _from_npz(data, path, backend)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"path: {path!r} is not a valid scattering statistics file ({err})") from err
    bk = BackendCompat(resolve_backend(backend))
    # The saved dtype, asked for by name: a float64 file on a backend that cannot hold float64 as
    # configured (JAX without x64) is that backend's ValueError, not a silent float32 copy.
    coeffs = {n: bk.asarray(a, dtype=a.dtype.name) for n, a in host.items()}
    return cls(coeffs, backend=bk, **fields)


def _from_npz(data, path, backend):
    """``(host coefficients, the other constructor arguments, backend)`` of a statistics file."""
    fmt = str(data["format"]) if "format" in data else None
    if fmt != FORMAT and fmt not in OLD_FORMATS:
        raise ValueError(f"path: {path!r} is not a scattering statistics file written by save()")
    settings = None
    if fmt == FORMAT:
        if backend is None:
            backend = str(data["backend"])
        saved = json.loads(str(data["settings"]))
        settings = None if saved is None else OperatorSettings.from_dict(saved)
    host = {n: np.asarray(data[f"coef_{n}"]) for n in ORDER if f"coef_{n}" in data}
    fields = dict(complex_names=[str(n) for n in data["complex"]], j2_j3=data["j2_j3"], j1_j2_j3=data["j1_j2_j3"],
                  cross=bool(data["cross"]), norm=str(data["norm"]) or None, settings=settings)
    return host, fields, backend
