"""The one table of backends: a new framework is one row here plus its folder under ``backends/``.

Each row says how to find the adapter (a sub-package of ``foscat_core.backends``), which names
select it, how to recognise its arrays without importing a framework the user did not, and how to
install it. Nothing here imports a framework.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class BackendEntry:
    """One backend.

    Attributes
    ----------
    name : str
        Canonical name (``"torch"``).
    aliases : tuple of str
        Other accepted names, lower case (``("pytorch",)``).
    package : str
        The adapter's sub-package of ``foscat_core.backends``; it defines ``make_backend(device)``
        and ``device_of(x)`` and imports its framework only inside them.
    array_type : tuple of (str, str) or None
        ``(module, class name)`` of the framework's array type, checked with ``isinstance`` only
        when that module is already loaded (a framework never imported holds no arrays).
    array_modules : tuple of str
        Prefixes of ``type(x).__module__`` of the framework's other array-like types (variables,
        tracers).
    install : str
        The command that installs the framework for this package.
    autograd : bool
        Whether the backend differentiates (trains networks, synthesises maps).
    """

    name: str
    aliases: tuple
    package: str
    array_type: tuple = None
    array_modules: tuple = ()
    install: str = ""
    autograd: bool = True

    @property
    def framework_module(self):
        """The framework's top-level module name (``None`` for NumPy, always present)."""
        return None if self.array_type is None else self.array_type[0]


BACKENDS = (
    BackendEntry("numpy", ("np",), "numpy", autograd=False),
    BackendEntry("torch", ("pytorch",), "torch", ("torch", "Tensor"), ("torch",),
                 "pip install 'foscat_core[torch]'"),
    BackendEntry("tensorflow", ("tf",), "tensorflow", ("tensorflow", "Tensor"), ("tensorflow", "tf_keras"),
                 "pip install 'foscat_core[tensorflow]'"),
    BackendEntry("jax", (), "jax", ("jax", "Array"), ("jax", "jaxlib"), "pip install 'foscat_core[jax]'"),
)

NAMES = tuple(entry.name for entry in BACKENDS)
ALIASES = {alias: e.name for e in BACKENDS for alias in (e.name, *e.aliases)}
BY_NAME = {entry.name: entry for entry in BACKENDS}
AUTOGRAD_NAMES = tuple(entry.name for entry in BACKENDS if entry.autograd)


def installed_autograd_backends():
    """Names of the backends with autograd whose framework is installed here (nothing imported)."""
    import importlib.util

    return tuple(e.name for e in BACKENDS if e.autograd and importlib.util.find_spec(e.framework_module) is not None)
