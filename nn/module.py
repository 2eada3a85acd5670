"""``NativeModule``: layers and networks are written once and instantiated as the framework's
own module class.

``SomeLayer(..., backend="torch")`` returns an instance of a subclass of both ``SomeLayer`` and
``torch.nn.Module`` (``tf.Module`` for TensorFlow, ``flax.nnx.Module`` for JAX, a plain class for NumPy). So a torch network
has ``state_dict``, ``.parameters()`` and works with any torch optimiser, a TensorFlow one
tracks its ``tf.Variable``s, and ``isinstance(net, SomeLayer)`` holds on every backend.

Sub-classes register what they hold with :meth:`add_parameter`, :meth:`add_state` and
:meth:`add_child`: that registry gives every variable one portable name (``"enc.0.conv1.weight"``)
in the same order on every backend, which is what the weight files use.
"""

import sys

from foscat_core.backends import Backend, get_backend, resolve_backend


_native_classes = {}


def _native_class(cls, backend):
    key = (cls, backend.name)
    if key not in _native_classes:
        base = backend.nn.module_base
        name = f"{cls.__name__}"
        native = type(name, (cls, base), {"__module__": cls.__module__, "_fc_portable": cls,
                                          "_fc_backend_name": backend.name})
        # Registered in the defining module under a unique name so pickling (torch.save) finds it.
        alias = f"_{cls.__name__}__{backend.name}"
        native.__qualname__ = alias
        setattr(sys.modules[cls.__module__], alias, native)
        _native_classes[key] = native
    return _native_classes[key]


def module_backend(backend=None, device=None):
    """A backend object from ``backend=`` and an optional ``device=`` (``None``: the default)."""
    bk = resolve_backend(backend)
    if device is not None and str(device) != str(bk.device):
        bk = get_backend(bk.name, device)
    return bk


class NativeModule:
    """Base of every layer and network; see the module docstring.

    Sub-classes take ``backend=`` (and networks ``device=``) as keyword arguments and call
    ``super().__init__(backend=..., device=...)`` before registering anything.

    Parameters
    ----------
    backend : str or Backend, optional
        Keyword-only. Default: the backend of a positional or keyword argument that has one
        (e.g. a :class:`~foscat_core.SphericalStencil`), else the default backend.
    device : str, optional
        Keyword-only; a framework device such as ``"cuda:0"``.

    A sub-class defines ``forward``; calling the module calls it. Variables registered with
    :meth:`add_parameter` keep the shape of the NumPy array they start from.

    Examples
    --------
    A layer written once, here built on NumPy; it scales each channel of (B, C, N_cells) maps:

    >>> import numpy as np
    >>> from foscat_core.nn import NativeModule
    >>> class Gain(NativeModule):
    ...     def __init__(self, channels, *, backend=None, device=None):
    ...         super().__init__(backend=backend, device=device)
    ...         self.add_parameter("gain", np.full((1, channels, 1), 2.0), "float32")
    ...     def forward(self, x):
    ...         return x * self.gain
    >>> layer = Gain(3, backend="numpy")
    >>> isinstance(layer, Gain), layer.n_parameters()
    (True, 3)
    >>> [name for name, _ in layer.named_variables()]
    ['gain']
    >>> layer(np.ones((2, 3, 12), "float32"))[0, :, 0]
    array([2., 2., 2.], dtype=float32)
    """

    def __new__(cls, *args, backend=None, device=None, **kwargs):
        if "_fc_portable" in cls.__dict__ and backend is None and device is None:
            return object.__new__(cls)  # already a framework class (unpickling, copy.deepcopy)
        if backend is None:
            # Layers built on a stencil take its backend (the same rule their __init__ follows).
            backend = next((a.backend for a in (*args, *kwargs.values()) if isinstance(getattr(a, "backend", None), Backend)), None)
        # type(net)(...) or type(net).load(...) on another backend starts from the portable class.
        portable = cls.__dict__.get("_fc_portable", cls)
        native = _native_class(portable, module_backend(backend, device))
        obj = object.__new__(native)
        if not isinstance(obj, cls):  # Python only runs __init__ itself on instances of cls
            obj.__init__(*args, backend=backend, device=device, **kwargs)
        return obj

    def __init__(self, *, backend=None, device=None):
        super().__init__()  # the framework's module base (torch.nn.Module / tf.Module / plain)
        if backend is None:  # type(net)(...): the framework of the class it was built as, on the
            # default device when that framework is the default (set_backend("torch", device=...)).
            name, default = type(self).__dict__.get("_fc_backend_name"), resolve_backend()
            backend = default if device is None and default.name == name else name
        self.backend = module_backend(backend, device)
        self.fw = self.backend.nn
        # (kind, name) in registration order, identical on every backend; set past the
        # framework's attribute tracking, which has nothing to track here.
        object.__setattr__(self, "_fc_names", [])

    def __getstate__(self):
        base = getattr(super(), "__getstate__", None)
        state = dict(base() if base is not None else self.__dict__)
        state.pop("_fc_evaluator", None)  # a compiled or closed-over function: rebuilt on use
        return state

    def _fc_rebind(self, backend):
        """Point this module tree at ``backend`` (another device): objects holding backend arrays
        (stencils, wavelet banks) are moved there, once each, so layers sharing one still do."""
        for module in _walk(self):
            if module.backend is backend:
                continue
            for name, value in list(vars(module).items()):
                if hasattr(value, "on_backend"):
                    object.__setattr__(module, name, _moved(value, backend))
            object.__setattr__(module, "backend", backend)
            object.__setattr__(module, "fw", backend.nn)
            module.__dict__.pop("_fc_evaluator", None)
            module._fc_prepare()

    def _fc_prepare(self):
        """Build ahead of time what ``forward`` would otherwise build on first use (operators,
        gather tables), so that a graph compiler tracing ``forward`` finds it made. Called by
        layers at the end of their ``__init__``, after a move to another device and after
        unpickling or copying; the default builds nothing."""

    def __setstate__(self, state):
        base = getattr(super(), "__setstate__", None)
        if base is not None:
            base(state)
        else:
            self.__dict__.update(state)
        self._fc_prepare()  # (a copied stencil comes without its operators)

    # --- registration -----------------------------------------------------------------------
    def add_parameter(self, name, value, dtype):
        """Register a trainable variable initialised from a NumPy array."""
        setattr(self, name, self.fw.parameter(value, dtype))
        self._fc_names.append(("param", name))

    def add_state(self, name, value, dtype):
        """Register a non-trainable variable (e.g. BatchNorm running statistics)."""
        self.fw.add_state(self, name, value, dtype)
        self._fc_names.append(("state", name))

    def add_child(self, name, module):
        """Register a sub-module, or a list of sub-modules."""
        if isinstance(module, (list, tuple)):
            setattr(self, name, self.fw.module_list(list(module)))
            self._fc_names.append(("list", name))
        else:
            setattr(self, name, module)
            self._fc_names.append(("child", name))

    def _fc_children(self):
        for kind, name in self._fc_names:
            if kind == "child":
                yield name, getattr(self, name)
            elif kind == "list":
                for i, child in enumerate(getattr(self, name)):
                    yield f"{name}.{i}", child

    def _fc_named_variables(self, trainable_only=False, prefix=""):
        for kind, name in self._fc_names:
            if kind == "param" or (kind == "state" and not trainable_only):
                yield prefix + name, getattr(self, name)
        for name, child in self._fc_children():
            yield from child._fc_named_variables(trainable_only, prefix + name + ".")

    def named_variables(self):
        """``[(portable_name, variable), ...]``: every parameter and state, in a fixed order."""
        return list(self._fc_named_variables())

    def n_parameters(self):
        """The number of trainable scalars."""
        total = 0
        for _, v in self._fc_named_variables(trainable_only=True):
            size = 1
            for s in v.shape:
                size *= int(s)
            total += size
        return total


def _walk(module):
    yield module
    for _, child in module._fc_children():
        yield from _walk(child)


def _moved(value, backend):
    """``value`` on ``backend``: one copy per device, remembered in a table every copy shares
    (so moving back returns the original, operators already built)."""
    clones = value.__dict__.setdefault("_fc_clones", {})
    clones.setdefault((value.backend.name, str(value.backend.device)), value)
    key = (backend.name, str(backend.device))
    if key not in clones:
        clones[key] = value.on_backend(backend)
    return clones[key]
