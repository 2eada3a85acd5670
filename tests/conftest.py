"""Shared fixtures: every op test runs over the available backends x dtypes.

NumPy float64 is the reference every other backend is compared with.
"""

import importlib.util
import os
import tempfile

import numpy as np
import pytest

# Keep test stencil tables out of the user's cache folder.
os.environ.setdefault("FOSCAT_CORE_CACHE_DIR", tempfile.mkdtemp(prefix="foscat_core_test_cache_"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker process (pytest -n): with a thread per core in every worker the
    # frameworks' spinning threads oversubscribe the cores and everything runs many times slower.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from foscat_core.backends.registry import BACKENDS as _REGISTRY

# Every registered backend whose framework is installed: a new backend's row in the registry
# puts it in every cross-backend test.
BACKENDS = [e.name for e in _REGISTRY if e.framework_module is None or importlib.util.find_spec(e.framework_module)]
AUTOGRAD_BACKENDS = [e.name for e in _REGISTRY if e.autograd and e.name in BACKENDS]
if "jax" in BACKENDS:  # float64 cases need JAX's 64-bit mode (float32 stays the default dtype)
    import jax

    jax.config.update("jax_enable_x64", True)
DTYPES = ["float32", "float64"]
# Agreement with the NumPy float64 reference, per dtype.
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    return request.param


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


@pytest.fixture(params=AUTOGRAD_BACKENDS)
def autograd_backend(request):
    return request.param


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty stencil cache folder (and memory cache) for one test."""
    import foscat_core as fc

    folder = tmp_path / "cache"
    monkeypatch.setenv("FOSCAT_CORE_CACHE_DIR", str(folder))
    fc.clear_memory_cache()
    yield folder
    fc.clear_memory_cache()


@pytest.fixture
def one_torch_thread():
    """Small float64 products run much faster on one torch thread than on busy shared cores."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def to_numpy(x):
    """A NumPy copy of a NumPy, torch or TensorFlow array."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def assert_close(actual, reference, dtype):
    """Relative agreement (to the reference's scale) within the dtype's tolerance."""
    actual, reference = to_numpy(actual), np.asarray(reference)
    assert actual.shape == reference.shape
    scale = max(1.0, float(np.max(np.abs(reference))))
    err = float(np.max(np.abs(actual.astype(np.float64) - reference))) / scale
    assert err <= TOLERANCE[dtype], f"max relative error {err:.3e} > {TOLERANCE[dtype]:.0e}"


_OPERATORS = {}


def cached_funct(backend, **kw):
    """A scattering operator per (backend, settings), built once per test session: its stencil
    pyramid is the slow part."""
    from foscat_core.scattering import funct

    key = (backend, tuple(sorted(kw.items())))
    if key not in _OPERATORS:
        _OPERATORS[key] = funct(backend=backend, **kw)
    return _OPERATORS[key]


def load_example(name):
    """The module of ``examples/<name>.py`` (examples are scripts, not a package)."""
    from pathlib import Path
    import importlib.util as util

    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = util.spec_from_file_location(f"example_{name}", path)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthesise_on_torch_and_tensorflow(loss, target, x0, n_epochs=8):
    """The same L-BFGS synthesis (``loss`` against ``funct(KERNELSZ=3, NORIENT=2).eval(target)``)
    on torch and on TensorFlow: ``(outputs, histories)``, torch first."""
    from foscat_core.scattering import funct
    from foscat_core.synthesis import Loss, Synthesis

    outs, hists = [], []
    for name in ("torch", "tensorflow"):
        op = funct(KERNELSZ=3, NORIENT=2, backend=name)
        synth = Synthesis([Loss(loss, op, op.eval(target))], verbose=False)
        outs.append(synth.run(x0, NUM_EPOCHS=n_epochs, factr=1.0))
        hists.append(synth.get_history())
    return outs, hists
