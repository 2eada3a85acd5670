"""The contract every backend adapter fulfils.

A backend is the array namespace of one framework plus the few primitives the array API lacks.
The core (geometry, stencils, ops) only ever talks to this interface, so it never imports a
framework itself.
"""

import contextlib
import importlib

import numpy as np

from .dtypes import check_dtype_name, dtype_text


class NoGradientError(ValueError):
    """The value does not depend on the differentiated input through backend operations."""


class TracedHostCopyError(TypeError):
    """A host (NumPy) copy of an array asked for while a framework traces it: it has no values yet,
    and the copy would carry no gradient."""


def check_loss_value(loss, is_tensor):
    """A loss function's result must be a scalar tensor of the framework (differentiable)."""
    if not is_tensor(loss):
        raise TypeError(f"loss_fn must return a scalar tensor of the network's framework, got {type(loss).__name__}")
    if len(loss.shape) != 0:
        raise ValueError(f"loss_fn must return a scalar (shape ()), got shape {tuple(loss.shape)}; "
                         "reduce it, e.g. with a mean")


class SingleProcess:
    """The distribution contract of ``fit`` and ``Synthesis.run``, and its single-process default.

    ``backend.nn.distribution(model=None)`` returns an object with this interface: this one
    where nothing is distributed (NumPy, JAX, or torch / TensorFlow outside a process group or a
    ``tf.distribute`` strategy); ``backends/torch/distributed.py`` (an initialised
    ``torch.distributed`` process group) and ``backends/tensorflow/distributed.py`` (a
    ``tf.distribute`` strategy) implement it for several replicas.

    A global batch of ``n`` samples is cut into ``world_size`` contiguous shards (replica ``r``
    takes ``shard(n, r)``); each replica's gradient of ``share * mean loss over its shard``
    (``share = n_r / n``) is summed over the replicas, which equals the single-process gradient
    of the mean loss over the global batch.

    Attributes
    ----------
    active : bool
        False here: ``fit`` runs its ordinary single-process loop.
    world_size : int
        Number of replicas (1 here).
    rank : int
        This process's rank (0 here).
    is_main : bool
        True on the process that logs and writes checkpoints (rank 0).

    Examples
    --------
    >>> from foscat_core.backends import get_backend
    >>> dist = get_backend("numpy").nn.distribution()
    >>> dist.active, dist.world_size, dist.is_main, dist.shard(5)
    (False, 1, True, slice(0, 5, None))
    """

    active = False
    world_size = 1
    rank = 0
    is_main = True

    def shard(self, n, rank=None):
        """The slice of a global batch of ``n`` samples that replica ``rank`` (default: this
        process) takes: contiguous, sizes differing by at most one (``np.array_split``'s)."""
        rank = self.rank if rank is None else rank
        return slice(rank * n // self.world_size, (rank + 1) * n // self.world_size)

    def sum_host(self, values):
        """Element-wise sum over the processes of a float64 NumPy vector (here: itself)."""
        return np.asarray(values, dtype=np.float64)

    def gather_host(self, array):
        """The NumPy ``array`` of every process, in rank order (here: ``[array]``)."""
        return [array]


SINGLE_PROCESS = SingleProcess()


class Replicas(SingleProcess):
    """Shared part of the several-replica distributions (torch process group, TF strategy):
    the normalisation layers' statistics summed over the replicas inside :meth:`syncing`.
    Subclasses give ``fw`` (the framework adapter) and ``sum_replicas(t)``."""

    active = True

    @contextlib.contextmanager
    def syncing(self, model):
        """Within the block, batch-norm layers of the framework compute their statistics over the
        global batch (``fw.norm_sync``); the previous setting is restored after it."""
        previous = self.fw.norm_sync
        self.fw.norm_sync = self.sum_replicas
        try:
            yield
        finally:
            self.fw.norm_sync = previous


class Backend:
    """Base class of the NumPy, PyTorch and TensorFlow adapters.

    Parameters
    ----------
    None
        Not built directly: :func:`foscat_core.backends.get_backend` returns the shared instance
        of a concrete adapter (whose constructor takes an optional ``device``).

    Attributes
    ----------
    name : str
        A row of :mod:`foscat_core.backends.registry`.
    xp : module-like
        The array namespace (array-api-compat for NumPy and torch, a shim for TensorFlow,
        ``jax.numpy`` for JAX).
    has_autograd : bool
    host : bool
        True when arrays are plain host (NumPy) data: no graph, no device.
    nn : object
        The network adapter (module base class, variables, activations, optimiser, trainer) from
        the backend's ``framework`` module, built on first use.
    device : object
        The framework device arrays are placed on (``"cpu"`` for NumPy).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.backends import Backend, get_backend
    >>> bk = get_backend("numpy")
    >>> isinstance(bk, Backend), bk.name
    (True, 'numpy')
    >>> x = bk.asarray(np.arange(6.0).reshape(2, 3), dtype="float32")  # (B, N)
    >>> bk.is_native(x), bk.dtype_name(x)
    (True, 'float32')
    >>> bk.to_numpy(bk.take(x, bk.index_array([2, 0]), axis=1))
    array([[2., 0.],
           [5., 3.]], dtype=float32)
    """

    name = "base"
    has_autograd = False
    host = False

    def __repr__(self):
        return f"<foscat_core backend {self.name!r}>"

    def __reduce__(self):
        # Copies and pickles of objects holding a backend get the registry's own instance (a
        # backend holds framework modules, which cannot be pickled).
        from foscat_core.backends import get_backend

        return (get_backend, (self.name, str(self.device)))

    # --- arrays ---------------------------------------------------------------------------
    def dtype(self, name):
        """The framework dtype for ``"float32"`` / ``"float64"`` (also ``"int64"``, ``"bool"``)."""
        raise NotImplementedError

    def dtype_name(self, x):
        """``"float32"``, ``"float64"``, ... of a backend array."""
        return dtype_text(x.dtype)

    def is_native(self, x):
        """True when ``x`` is already an array of this backend."""
        raise NotImplementedError

    def asarray(self, x, dtype=None):
        """``x`` (NumPy array, list, scalar or native array) as a native array on this backend's
        device; ``dtype`` is a name such as ``"float32"`` (``None`` keeps the dtype)."""
        raise NotImplementedError

    def to_numpy(self, x):
        """A NumPy copy of a native array (detached from any graph)."""
        raise NotImplementedError

    def index_array(self, idx):
        """An int64 index array from a NumPy array, on this backend's device."""
        return self.asarray(np.asarray(idx, dtype=np.int64))

    # --- primitives the array API lacks -------------------------------------------------------
    def take(self, x, idx, axis):
        """Gather ``x`` along ``axis`` with a 1-D index array (from :meth:`index_array`)."""
        return self.xp.take(x, idx, axis=axis)

    def sparse_operator(self, forms, dtype):
        """The operator of ``forms`` (a :class:`~backends.sparse_forms.SparseForms`, its host
        forms, made once in the core) on this backend, ready for :meth:`stencil_contract` and
        :meth:`sparse_matmul`, its values in the floating type named ``dtype``. A backend only
        uploads forms (on first use of each); it derives none itself.
        """
        raise NotImplementedError

    def sparse_matmul(self, op, x):
        """``op @ x``: a plain sparse-dense product, differentiable in ``x``.

        Parameters
        ----------
        op : sparse operator from :meth:`sparse_operator`, shape (N_out, N_in)
        x : native array, shape (N_in, L)

        Returns
        -------
        native array, shape (N_out, L)
        """
        raise NotImplementedError

    def stencil_contract(self, xt, wr, op):
        """The oriented-stencil product at the heart of ``conv``.

        Parameters
        ----------
        xt : native array, shape (B, N_in, C_in)
        wr : native array, shape (C_in, P * C_out), column ``p * C_out + o`` = kernel point p,
            output channel o.
        op : sparse operator from :meth:`sparse_operator`, shape (N_out, N_in * P).

        Returns
        -------
        native array, shape (B, N_out, C_out):
        ``out[b] = op @ reshape(xt[b] @ wr, (N_in * P, C_out))``, differentiable in ``xt`` and ``wr``.
        """
        raise NotImplementedError

    def prepare_contract(self, operators, n_in, c_in, c_out):
        """Build ahead of time whatever :meth:`stencil_contract` will need for the operators of
        ``operators()`` (a callable returning a list of them, only called by backends that
        prepare anything) with inputs of ``n_in`` cells and ``c_in`` channels and weights of
        ``c_out`` output channels per tap, forward and backward. The default builds nothing:
        products build what they need on first use. The torch backend builds its gather tables
        here, so that ``torch.compile`` and ``torch.export`` never trace host (scipy) code."""

    def prepare_matmul(self, op):
        """Build ahead of time whatever :meth:`sparse_matmul` will need for ``op`` (from
        :meth:`sparse_operator`), forward and backward. The default builds nothing: products
        build what they need on first use. The torch backend builds its gather tables here, so
        that ``torch.compile`` traces dictionary look-ups only (no graph break)."""

    def is_compiling(self):
        """True while a framework traces a graph in which host (NumPy) code cannot run, with no
        array at hand to ask (:meth:`is_traced` asks one): ``torch.compile`` / ``torch.export``.
        False elsewhere (``jax.jit`` and ``tf.function`` run Python host code while tracing)."""
        return False

    def host_call(self, fn):
        """``fn`` as a function whose body a graph compiler never traces: host code (NumPy,
        healpy, SciPy) building data ahead of time. The identity here; the torch backend wraps it
        in ``torch.compiler.disable`` (Dynamo would otherwise trace every frame such code runs, even
        the frames an uncompiled part of a compiled call runs, and may fail in them)."""
        return fn

    def is_traced(self, x):
        """True when ``x`` holds no values yet (a graph being traced or compiled)."""
        return False

    def assert_finite(self, x, message):
        """``x``, or ``ValueError(message)`` if any value is NaN or infinite. While a graph is
        traced (see :meth:`is_traced`) the check is part of the graph instead and fails at run
        time with the framework's error carrying ``message``."""
        if not bool(np.all(np.isfinite(self.to_numpy(x)))):
            raise ValueError(message)
        return x

    def compile(self, fn):
        """``fn`` (native arrays and pytrees of them in, out) compiled once per input shape where the
        framework gains from it (``jax.jit``: eager JAX compiles every operation separately);
        ``fn`` itself elsewhere. ``fn`` must be a pure function of its arguments."""
        return fn

    def pow(self, x, p):
        """Elementwise ``x ** p`` of a native array (``p`` a Python number)."""
        return x**p

    def values_at_ranks(self, y, values):
        """Each row of ``y`` (B, N) replaced by ``values`` (N,), sorted ascending, in the order of
        its ranks: the smallest entry of a row gets ``values[0]``, the largest ``values[-1]``;
        equal entries in the order of their positions (a stable sort, the same on every backend).
        No gradient flows through it."""
        xp = self.xp
        ranks = xp.argsort(xp.argsort(y, axis=1, stable=True), axis=1, stable=True)
        n = int(values.shape[0])
        return xp.reshape(xp.take(values, xp.reshape(ranks, (-1,)), axis=0), (-1, n))

    def stop_gradient(self, x):
        """``x`` with no gradient flowing back through it (``detach``, ``tf.stop_gradient``,
        ``jax.lax.stop_gradient``); the identity where there is no autograd."""
        return x

    def size_along(self, x, axes):
        """The number of entries of ``x`` along ``axes``: a Python float, or a scalar tensor of
        ``x``'s dtype when a size is only known at run time (a traced batch dimension)."""
        size = 1.0
        for axis in axes:
            size *= int(x.shape[axis])
        return size

    # --- networks -----------------------------------------------------------------------------
    @property
    def nn(self):
        adapter = self.__dict__.get("_nn")
        if adapter is None:
            package = type(self).__module__.rsplit(".", 1)[0]
            adapter = importlib.import_module(f"{package}.framework").Framework(self)
            self.__dict__["_nn"] = adapter
        return adapter

    # --- autograd -------------------------------------------------------------------------
    def _no_autograd(self):
        return NotImplementedError(
            f"the {self.name!r} backend has no automatic differentiation; "
            "use a backend with autograd (torch, tensorflow or jax) for gradients"
        )

    def value_and_grad(self, fn, x):
        """``(fn(x), d fn / d x)`` for a scalar-valued ``fn`` of one native array ``x``.

        Raises :class:`NoGradientError` when ``fn``'s value does not depend on ``x`` through
        backend operations."""
        raise self._no_autograd()

    def compile_value_and_grad(self, fn):
        """``fn`` maps a native array ``x`` to ``(scalar, aux)`` (``aux`` a list of scalars);
        returns ``g(x) -> (scalar, aux, d scalar / d x)``, compiled where the framework compiles
        (a ``tf.function`` graph, ``jax.jit``). The first call traces ``fn``; a tracing failure
        propagates, and the caller may fall back to :meth:`value_and_grad`. The default runs
        eagerly."""
        if not self.has_autograd:
            raise self._no_autograd()

        def run(x):
            aux = []

            def scalar(xt):
                value, extra = fn(xt)
                aux[:] = extra
                return value

            value, grad = self.value_and_grad(scalar, x)
            return value, list(aux), grad

        return run

    def check_float_dtype(self, dtype):
        return check_dtype_name(dtype)
