"""A TensorFlow network as a Keras 3 layer (``Network.as_keras_layer``).

Keras 3 tracks only its own ``keras.Variable``s, so a network's ``tf.Variable``s, set as an
attribute, are invisible to it (a ``keras.Model.fit`` would train nothing). Each one is wrapped
in a ``keras.Variable`` over the same ``tf.Variable`` (Keras's TensorFlow variable adopts a
``tf.Variable`` given as its initial value instead of copying it), and the wrappers are tracked
as the layer's weights: Keras trains, saves and loads them, and the network, which reads the
``tf.Variable``s themselves, sees every update.
"""


def keras_layer(model, name=None):
    """A ``keras.layers.Layer`` running ``model`` (a TensorFlow network); see ``Network.as_keras_layer``."""
    import keras

    policy = keras.config.dtype_policy()
    if policy.compute_dtype != policy.variable_dtype:
        raise ValueError(f"the global Keras dtype policy is {policy.name!r} (mixed precision), which a foscat_core "
                         f"network does not follow: it computes in its own dtype ({model.dtype}); set the policy "
                         f"to 'float32' with keras.config.set_dtype_policy before as_keras_layer() (and back after "
                         f"it for other layers: this layer keeps the network's dtype)")
    return _layer_class(keras)(model, name=name)


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
