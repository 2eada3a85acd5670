"""Module base for frameworks without one (NumPy: inference only), and the helpers a framework's
own base borrows from it (TensorFlow's ``tf.Module`` has no train/eval switch)."""


class PlainModule:
    """``train``/``eval`` and ``parameters()`` over the registry kept by ``nn.NativeModule``."""

    def __init__(self):
        self.training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def train(self, mode=True):
        """Set training mode (``True``) or evaluation mode on this module and every sub-module."""
        for module in walk_modules(self):
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self):
        """The trainable variables in registration order (as torch's ``parameters()``)."""
        return [v for _, v in self._fc_named_variables(trainable_only=True)]


def walk_modules(module):
    """``module`` and every sub-module registered with ``add_child``, depth first."""
    yield module
    for _, child in module._fc_children():
        yield from walk_modules(child)


class AdapterBase:
    """Base of the network adapters (``backend.nn``): they pickle as their backend's."""

    def __init__(self, backend):
        self.backend = backend

    def value(self, variable):
        """The array a parameter or state holds, for operations that take arrays only (the
        variable itself where variables are arrays; JAX overrides it)."""
        return variable

    def __reduce__(self):
        return (getattr, (self.backend, "nn"))
