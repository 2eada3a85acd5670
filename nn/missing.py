"""Missing input values (NaN) at the entrance of every network.

Without ``mask_missing`` a network refuses non-finite inputs, in training and in evaluation
mode alike (one reduction): a NaN would otherwise spread to every output and, in training, into
the batch-norm running statistics for good. With ``mask_missing=True`` NaN inputs become 0 and
the network gets one validity channel per input channel (1 valid, 0 missing), so its first layer
sees ``2 * n_chan_in`` channels: ``[x filled, validity]``.

On TensorFlow inside a ``tf.function`` the check is a graph assertion, which fails at run time
with ``tf.errors.InvalidArgumentError`` carrying the same message (a traced graph cannot raise a
Python ``ValueError``).

Examples
--------
>>> import numpy as np
>>> from foscat_core.backends import get_backend
>>> bk = get_backend("numpy")
>>> x = np.array([[[1.0, np.nan, 3.0]]])          # (B, C, N_cells)
>>> with_validity_channels(bk, bk.nn, x)  # (B, 2C, N_cells)
array([[[1., 0., 3.],
        [1., 0., 1.]]])
>>> check_finite(bk.nn, x)
Traceback (most recent call last):
...
ValueError: x contains NaN or infinite values; build the network with mask_missing=True to treat NaN inputs as missing cells
"""

NOT_FINITE = ("x contains NaN or infinite values; build the network with mask_missing=True to treat NaN "
              "inputs as missing cells")
INFINITE = "x contains infinite values; mask_missing=True treats NaN inputs as missing, not infinities"


def input_channels(n_chan_in, mask_missing):
    """Channels the first layer sees: ``n_chan_in``, doubled by the validity channels."""
    return 2 * n_chan_in if mask_missing else n_chan_in


def check_finite(fw, x):
    """``x`` unchanged if it is finite everywhere, else a ``ValueError`` pointing to ``mask_missing``."""
    return fw.assert_finite(x, NOT_FINITE)


def with_validity_channels(backend, fw, x):
    """(B, C, N) with NaN → (B, 2C, N): ``x`` with NaN replaced by 0, then 1/0 validity channels.

    Infinite values are still refused (they are not "missing", and would spread).
    """
    xp = backend.xp
    valid = x == x  # False exactly at NaN
    filled = fw.assert_finite(xp.where(valid, x, 0.0), INFINITE)
    return xp.concat([filled, xp.astype(valid, x.dtype)], axis=1)
