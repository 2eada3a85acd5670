"""A TensorFlow network as a Keras 3 layer (``Network.as_keras_layer``).

Keras 3 tracks only its own ``keras.Variable``s, so a network's ``tf.Variable``s, set as an
attribute, are invisible to it (a ``keras.Model.fit`` would train nothing). Each one is wrapped
in a ``keras.Variable`` over the same ``tf.Variable`` (Keras's TensorFlow variable adopts a
``tf.Variable`` given as its initial value instead of copying it), and the wrappers are tracked
as the layer's weights: Keras trains, saves and loads them, and the network, which reads the
``tf.Variable``s themselves, sees every update.
"""

import sys

def keras_layer(model, name=None):
    """A ``keras.layers.Layer`` running ``model`` (a TensorFlow network); see ``Network.as_keras_layer``."""
    import keras

    check_no_mixed_policy("as_keras_layer()")
    return _layer_class(keras)(model, name=name)


def check_no_mixed_policy(what):
    """A ``ValueError`` when a mixed-precision global Keras dtype policy is set (a network would
    silently compute in its own dtype instead). Only read when Keras is imported already: the
    policy cannot have been set otherwise."""
    keras = sys.modules.get("keras")
    config = getattr(keras, "config", None)
    if config is None or not hasattr(config, "dtype_policy"):
        return
    policy = config.dtype_policy()
    if policy.compute_dtype != policy.variable_dtype:
        raise ValueError(f"the global Keras dtype policy is {policy.name!r} (mixed precision), which foscat_core's "
                         f"TensorFlow networks do not follow (they compute in their own dtype, float32 or "
                         f"float64); set the policy to 'float32' with keras.config.set_dtype_policy before "
                         f"{what}, or use backend='torch' with torch.autocast for bfloat16 / float16")


_CLASSES = {}


def _layer_class(keras):
    if "layer" not in _CLASSES:
        class NetworkLayer(keras.layers.Layer):
            """``call(x, training=None)``: the network's forward, x (B, C_in, N_cells) ->
            (B, C_out, N_cells) (or what the network returns); ``training`` True/False sets the
            network's training flag for the call (``None``: the flag as it is)."""

            def __init__(self, network, name=None):
                # The network's dtype: Keras would otherwise cast float64 inputs to its float32.
                super().__init__(name=name, dtype=network.dtype)
                self.network = network
                self.network_variables = [_adopt(keras, v, key) for key, v in network.named_variables()]
                self.built = True  # the variables exist already

            def call(self, x, training=None):
                net = self.network
                if training is None:
                    return net(x)
                flag = net.training
                net.train(bool(training))
                try:
                    return net(x)
                finally:
                    net.train(flag)

        _CLASSES["layer"] = NetworkLayer
    return _CLASSES["layer"]


def _adopt(keras, variable, name):
    """A ``keras.Variable`` whose storage is ``variable`` itself (checked: not a copy)."""
    wrapped = keras.Variable(variable, trainable=variable.trainable, name=name)
    if wrapped.value is not variable:
        raise RuntimeError(f"this Keras version copies a tf.Variable given to keras.Variable ({name}); "
                           "as_keras_layer needs it to adopt the network's variable")
    return wrapped
