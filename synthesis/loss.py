"""One term of a synthesis objective: a user function of the map, its operator and its arguments."""

from foscat_core._validation import check_dtype_name
from foscat_core.backends import Backend, get_backend, resolve_backend


def _plain(backend):
    """The plain backend under a wrapper such as the scattering operator's ``BackendCompat`` (``.raw``)."""
    raw = getattr(backend, "__dict__", {}).get("raw")
    return raw if isinstance(raw, Backend) else backend


def _backend_from_operator(scat_op):
    """The (plain) backend object ``scat_op`` works on, or ``None`` when it names none."""
    if isinstance(scat_op, Backend):
        return _plain(scat_op)
    candidate = getattr(scat_op, "backend", None)
    if isinstance(candidate, Backend):
        return _plain(candidate)
    if isinstance(candidate, str):
        return get_backend(candidate)
    # FOSCAT-style operators may wrap the backend one level deeper (op.backend.backend).
    inner = getattr(candidate, "backend", None)
    if isinstance(inner, Backend):
        return _plain(inner)
    return None


def _dtype_from_operator(scat_op):
    """The floating dtype name ``scat_op`` computes in (``all_type`` or ``dtype``), else ``None``."""
    for attribute in ("all_type", "dtype"):
        value = getattr(scat_op, attribute, None)
        if isinstance(value, str) and value in ("float32", "float64"):
            return value
    return None


class BackendOnly:
    """What a loss made with ``scat_op=None`` receives as ``scat_op``: just ``.backend`` and ``.dtype``,
    so a loss can always write ``scat_op.backend.xp``.

    Parameters
    ----------
    backend : Backend
        The loss's backend object (not a name).
    dtype : {"float64", "float32"}
        The dtype name of the tensor ``x`` handed to the loss function.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.backends import get_backend
    >>> from foscat_core.synthesis import BackendOnly, Loss
    >>> BackendOnly(get_backend("numpy"), "float64")
    BackendOnly(<foscat_core backend 'numpy'>, dtype='float64')

    :class:`Loss` builds one when ``scat_op`` is ``None``:

    >>> def mean_loss(x, scat_op, args):  # x: (N,)
    ...     return scat_op.backend.xp.mean(x) ** 2
    >>> loss = Loss(mean_loss, None, backend="numpy")
    >>> loss.scat_operator
    BackendOnly(<foscat_core backend 'numpy'>, dtype='float64')
    >>> float(loss.eval(np.array([1.0, 3.0])))
    4.0
    """

    def __init__(self, backend, dtype):
        self.backend = backend
        self.dtype = dtype

    def __repr__(self):
        return f"BackendOnly({self.backend!r}, dtype={self.dtype!r})"


class Loss:
    """One differentiable term of a synthesis objective.

    Parameters
    ----------
    function : callable
        ``function(x, scat_op, args)`` -- or ``function(x, batch, scat_op, args)`` for a batched
        loss (``batch`` or ``batch_update`` given) -- returning a scalar tensor of the backend.
        ``x`` is a backend tensor shaped like the ``in_x`` given to :meth:`Synthesis.run`
        (e.g. ``(N,)`` or ``(B, C, N)``), of dtype ``dtype``; ``args`` is the tuple ``param``.
        With ``info_callback=True`` the function also takes the keyword ``return_all`` and, when
        it is True, returns ``(value, info)``; ``info`` (any object) is kept by the synthesis at
        each report (see :meth:`Synthesis.get_info`).

        **The loss must stay in backend operations on ``x``** (``backend.xp`` functions, tensor
        arithmetic, a scattering operator's ``eval``, a network called on ``x``...), so that the
        gradient flows back to ``x``. Unlike the reference library's documentation example, which
        converts ``x`` to NumPy before calling a network (that cuts the autograd graph and leaves
        the synthesis without a gradient), call the network on ``x`` itself, reshaped with backend
        ops if needed. A loss returning a NumPy value is refused with a ``TypeError``.
    scat_op : object or None
        Passed unchanged to ``function``. It fixes the backend: ``scat_op`` may be a foscat_core
        backend object, or any object whose ``.backend`` is a backend object or a backend name
        (the scattering operator, a network, a stencil...). ``None`` for a loss that needs no
        operator; then give ``backend=`` (default: the default backend), and ``function``
        receives a :class:`BackendOnly` stand-in whose ``.backend`` is that backend.
    *param
        Extra arguments, handed to ``function`` as the tuple ``args``.
    name : str
        Label used in the progress messages (default: the function's name).
    batch : object, optional
        Current batch handed to a batched ``function`` (any object: an array of targets,
        a list of reference statistics...).
    batch_data : object, optional
        What ``batch_update`` draws batches from (a data set, a random generator...).
    batch_update : callable, optional
        ``batch_update(batch_data)`` returns the next batch (or ``None`` to keep the current one,
        e.g. after updating a mutable batch in place). :meth:`Synthesis.run` calls it before the
        first restart when ``batch`` is ``None``, and before every later restart
        (``NUM_STEP_BIAS > 1``), so each L-BFGS restart sees a fresh batch.
    info_callback : bool
        True when ``function`` supports ``return_all`` (see ``function``).
    backend : str or Backend, optional
        The backend when ``scat_op`` names none (``None`` = the default backend). When both
        are given they must agree.
    dtype : {"float64", "float32"}, optional
        Dtype of the tensor ``x`` handed to ``function``. Default: the operator's ``all_type``
        or ``dtype`` attribute when it is one of these names, else ``"float64"`` (the L-BFGS-B
        vector is float64 in any case).

    Examples
    --------
    >>> import numpy as np
    >>> def variance_loss(x, scat_op, args):
    ...     xp = scat_op.backend.xp
    ...     return (xp.mean((x - xp.mean(x)) ** 2) - args[0]) ** 2
    >>> loss = Loss(variance_loss, None, 2.0, backend="numpy")
    >>> float(loss.eval(np.array([1.0, -1.0])))
    1.0
    """

    def __init__(self, function, scat_op, *param, name="", batch=None, batch_data=None, batch_update=None,
                 info_callback=False, backend=None, dtype=None):
        if not callable(function):
            raise TypeError(f"function must be callable as function(x, scat_op, args), got {type(function).__name__}")
        if batch_update is not None and not callable(batch_update):
            raise TypeError(f"batch_update must be callable as batch_update(batch_data), got {type(batch_update).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        found = _backend_from_operator(scat_op) if scat_op is not None else None
        if scat_op is not None and found is None:
            raise TypeError(
                "scat_op must be a foscat_core backend or an object with a .backend attribute naming one "
                f"(a scattering operator, a network...), got {type(scat_op).__name__}; use scat_op=None "
                "with backend='torch', 'tensorflow' or 'jax' for a loss that needs no operator"
            )
        if backend is not None:
            wanted = _plain(resolve_backend(backend))
            if found is not None and found is not wanted:
                raise ValueError(f"backend={wanted.name!r} disagrees with the backend of scat_op ({found.name!r})")
            found = wanted
        self.backend = found if found is not None else resolve_backend(None)
        if dtype is None:
            dtype = _dtype_from_operator(scat_op) or "float64"
        self.dtype = check_dtype_name(dtype)
        self.function = function
        self.scat_operator = scat_op if scat_op is not None else BackendOnly(self.backend, self.dtype)
        self.args = param
        self.name = name or getattr(function, "__name__", "loss")
        self.batch = batch
        self.batch_data = batch_data
        self.batch_update = batch_update
        self.info = bool(info_callback)

    @property
    def batched(self):
        """True when ``function`` takes a batch (``batch`` or ``batch_update`` was given)."""
        return self.batch is not None or self.batch_update is not None

    def __repr__(self):
        return f"Loss({self.name!r}, backend={self.backend.name!r}, dtype={self.dtype!r}, batched={self.batched})"

    def refresh_batch(self):
        """Ask ``batch_update(batch_data)`` for the next batch; a ``None`` answer keeps the current one."""
        if self.batch_update is not None:
            new = self.batch_update(self.batch_data)
            if new is not None:
                self.batch = new
        return self.batch

    def eval(self, x, batch=None, return_all=False):
        """The loss at ``x`` (a backend tensor, or host data converted to ``dtype``).

        Returns the function's value (a backend scalar), or ``(value, info)`` when
        ``return_all`` is True and the loss was made with ``info_callback=True``
        (``info`` is ``None`` otherwise).
        """
        if not self.backend.is_native(x):
            x = self.backend.asarray(x, dtype=self.dtype)
        head = (x,)
        if self.batched:
            head = (x, self.batch if batch is None else batch)
        if self.info:
            out = self.function(*head, self.scat_operator, self.args, return_all=return_all)
            if return_all:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError(f"loss {self.name!r} made with info_callback=True must return (value, info) "
                                    f"when called with return_all=True, got {type(out).__name__}")
                return out
            return out
        out = self.function(*head, self.scat_operator, self.args)
        return (out, None) if return_all else out

    __call__ = eval
