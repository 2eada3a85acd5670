"""JAX backend: ``jax.numpy`` (an array-API namespace), ``jax.value_and_grad`` and ``jax.jit``, GPU when
JAX sees one. The stencil product is in :mod:`backends.jax.contract`."""

import numpy as np

from ..base import Backend, NoGradientError, TracedHostCopyError
from .contract import JaxStencilOperator, sparse_matmul, stencil_contract


def _jax():
    try:
        import jax
    except ImportError as err:  # pragma: no cover - exercised only without JAX
        raise ImportError("the 'jax' backend needs JAX: pip install 'foscat_core[jax]' (or pip install jax)") from err
    return jax


def check_device(jax, device):
    """A ``jax.Device`` from ``None`` (JAX's default: a GPU when it sees one), ``"cpu"``, ``"gpu"``,
    ``"cuda"``, ``"cpu:0"``, ``"gpu:1"``, ``"cuda:1"`` or a ``jax.Device``; a device JAX does not
    see is a ``ValueError`` listing those it does (never a silent fallback to the CPU)."""
    if device is None:
        return jax.devices()[0]
    if isinstance(device, jax.Device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a JAX device name such as 'cpu' or 'gpu:0', got {type(device).__name__}")
    text = device.strip().lower()
    kind, _, index = text.partition(":")
    kind = {"cuda": "gpu", "rocm": "gpu"}.get(kind, kind)
    seen = [f"{d.platform}:{d.id}" for d in jax.devices()] + [f"cpu:{d.id}" for d in jax.devices("cpu")]
    try:
        candidates = jax.devices(kind)
    except RuntimeError:
        candidates = []
    if index and not index.isdigit():
        raise ValueError(f"device must be a JAX device name such as 'cpu' or 'gpu:0', got {device!r}")
    pick = [d for d in candidates if not index or d.id == int(index)]
    if not pick:
        raise ValueError(f"device {device!r} does not exist on this machine; JAX sees {sorted(set(seen))}")
    return pick[0]


class JaxBackend(Backend):
    """JAX arrays on ``device`` (default: JAX's default device, the GPU when present)."""

    name = "jax"
    has_autograd = True

    def __init__(self, device=None):
        jax = _jax()
        self.jax = jax
        self.xp = jax.numpy
        self.device = check_device(jax, device)

    def __repr__(self):
        return f"<foscat_core backend 'jax' on {self.device}>"

    def __reduce__(self):
        from .. import get_backend

        return (get_backend, (self.name, f"{self.device.platform}:{self.device.id}"))

    def _check_x64(self, name):
        if name in ("float64", "int64", "complex128") and not self.jax.config.jax_enable_x64:
            raise ValueError(f"dtype {name!r} on the jax backend needs 64-bit mode: call "
                             "jax.config.update('jax_enable_x64', True) before making arrays (JAX would "
                             "otherwise store float32 silently)")

    def dtype(self, name):
        self._check_x64(name)
        return getattr(self.jax.numpy, name)

    def dtype_name(self, x):
        return np.dtype(x.dtype).name

    def is_native(self, x):
        return isinstance(x, self.jax.Array)

    def asarray(self, x, dtype=None):
        jnp = self.jax.numpy
        if dtype is not None:
            self._check_x64(dtype)
        if self.is_native(x):
            return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)
        host = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
        if host.dtype in (np.float64, np.int64) and dtype is None and not self.jax.config.jax_enable_x64:
            host = host.astype(np.float32 if host.dtype == np.float64 else np.int32)
        # Host data becomes a concrete array even while jax.jit traces (as TensorFlow's init_scope
        # does): objects caching such arrays (operators, kernels, identities) never hold a tracer.
        with self.jax.ensure_compile_time_eval():
            return self.jax.device_put(jnp.asarray(host), self.device)

    def index_array(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        small = idx.size == 0 or (idx.min() >= -(2**31) and idx.max() < 2**31)
        with self.jax.ensure_compile_time_eval():  # concrete under jax.jit too (see asarray)
            return self.jax.device_put(idx.astype(np.int32 if small or not self.jax.config.jax_enable_x64 else np.int64),
                                       self.device)

    def to_numpy(self, x):
        if isinstance(x, self.jax.core.Tracer):
            raise TracedHostCopyError(
                "cannot copy an array to NumPy while JAX traces it (jax.jit / jax.grad): it has no values yet, "
                "and a NumPy copy would carry no gradient; keep the computation in backend operations on it")
        if self.is_native(x):
            return np.array(self.jax.device_get(x), copy=True)
        return np.array(x, copy=True)

    def is_traced(self, x):
        return isinstance(x, self.jax.core.Tracer)

    def assert_finite(self, x, message):
        """``x``, or a ``ValueError(message)`` if any value is NaN or infinite. Under ``jax.jit``
        the check runs as a host callback when the compiled function runs; its ``ValueError``
        reaches the caller wrapped in JAX's runtime error, with the same message."""
        jnp = self.jax.numpy
        if not self.is_traced(x):
            with self.jax.ensure_compile_time_eval():  # a concrete x met inside a trace is checked now
                if not bool(jnp.all(jnp.isfinite(x))):
                    raise ValueError(message)
            return x
        finite = jnp.all(jnp.isfinite(x))

        def check(ok):
            if not bool(ok):
                raise ValueError(message)

        self.jax.debug.callback(check, finite)
        return x

    def stop_gradient(self, x):
        return self.jax.lax.stop_gradient(x)

    def take(self, x, idx, axis):
        return self.jax.numpy.take(x, idx, axis=axis)

    def sparse_operator(self, forms, dtype):
        self._check_x64(dtype)
        return JaxStencilOperator(self._put_concrete, forms, np.dtype(dtype), self.device)

    def _put_concrete(self, host, device):
        with self.jax.ensure_compile_time_eval():  # concrete under jax.jit too (see asarray)
            return self.jax.device_put(host, device)

    def stencil_contract(self, xt, wr, op):
        return stencil_contract(self.jax, xt, wr, op, per_sample=self.device.platform == "cpu")

    def sparse_matmul(self, op, x):
        return sparse_matmul(op, x)

    def value_and_grad(self, fn, x):
        value, _, grad = self._value_and_grad(lambda t: (fn(t), []), x)
        return value, grad

    def _value_and_grad(self, fn, x):
        jax = self.jax

        def traced(t):
            value, aux = fn(t)
            # A value that depends on t is a tracer of t's differentiation trace; a constant is
            # concrete, or (inside jax.jit) a tracer of the outer compilation trace only.
            if getattr(value, "_trace", None) is not t._trace:
                raise NoGradientError("the value does not depend on x through JAX operations")
            return value, aux

        (value, aux), grad = jax.value_and_grad(traced, has_aux=True)(self.asarray(x))
        return value, aux, grad

    def compile(self, fn):
        return self.jax.jit(fn)

    def compile_value_and_grad(self, fn):
        return self.jax.jit(lambda x: self._value_and_grad(fn, x))
