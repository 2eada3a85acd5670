"""Input and target normalisation stored with a network (saved in its weight file).

Per input channel ``x -> (x - x_mean) / x_std`` before the network; for regression, per output
channel ``out -> out * y_std + y_mean`` after it, so the network answers in the user's units.
The constants are non-trainable states, like batch-norm running statistics; identity (mean 0,
std 1) until :meth:`DataNormalization.set` is called. ``is_set`` (2,) records whether the
input and the target constants were set, so a saved network reproduces ``normalization``.
"""

import numpy as np

from .module import NativeModule


def _channel_vector(value, size, name):
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), one value per channel, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    return arr


def _mean_std(mean, std, size, what):
    if (mean is None) != (std is None):
        raise ValueError(f"{what}_mean and {what}_std must be given together")
    if mean is None:
        return None
    mean = _channel_vector(mean, size, f"{what}_mean")
    std = _channel_vector(std, size, f"{what}_std")
    if not np.all(std > 0):
        raise ValueError(f"{what}_std must be > 0 in every channel, got {std}")
    return mean, std


class DataNormalization(NativeModule):
    """Per-channel normalisation constants of a network's inputs and (regression) outputs.

    Parameters
    ----------
    n_chan_in : int
        Input channels C_in.
    out_channels : int
        Output channels C_out.
    backend : str or Backend
        Keyword-only.
    dtype : {"float32", "float64"}

    Variables (states): ``x_mean``, ``x_std`` (C_in,), ``y_mean``, ``y_std`` (C_out,),
    ``is_set`` (2,).

    Examples
    --------
    >>> import numpy as np
    >>> norm = DataNormalization(2, 1, backend="numpy")
    >>> print(norm.as_dict())
    None
    >>> norm.set([1.0, 2.0], [2.0, 4.0], [10.0], [5.0])
    >>> norm.inputs(np.ones((1, 2, 3), "float32"))[0, :, 0]    # (B, C_in, N) -> same shape
    array([ 0.  , -0.25], dtype=float32)
    >>> norm.outputs(np.ones((1, 1, 3), "float32"))[0, 0]      # (B, C_out, N) -> user units
    array([15., 15., 15.], dtype=float32)
    >>> sorted(norm.as_dict())
    ['x_mean', 'x_std', 'y_mean', 'y_std']
    """

    def __init__(self, n_chan_in, out_channels, *, backend, dtype="float32"):
        super().__init__(backend=backend)
        self.n_chan_in, self.out_channels, self.dtype = n_chan_in, out_channels, dtype
        self.add_state("x_mean", np.zeros(n_chan_in), dtype)
        self.add_state("x_std", np.ones(n_chan_in), dtype)
        self.add_state("y_mean", np.zeros(out_channels), dtype)
        self.add_state("y_std", np.ones(out_channels), dtype)
        self.add_state("is_set", np.zeros(2), dtype)

    def set(self, x_mean=None, x_std=None, y_mean=None, y_std=None):
        """Validate and store the constants (host arrays, shapes (C_in,) and (C_out,), std > 0);
        ``None`` leaves that side the identity."""
        x = _mean_std(x_mean, x_std, self.n_chan_in, "x")
        y = _mean_std(y_mean, y_std, self.out_channels, "y")
        x_mean, x_std = x if x is not None else (np.zeros(self.n_chan_in), np.ones(self.n_chan_in))
        y_mean, y_std = y if y is not None else (np.zeros(self.out_channels), np.ones(self.out_channels))
        for name, value in (("x_mean", x_mean), ("x_std", x_std), ("y_mean", y_mean), ("y_std", y_std),
                            ("is_set", [float(x is not None), float(y is not None)])):
            self.fw.assign(getattr(self, name), np.asarray(value, dtype=self.dtype))

    def as_dict(self):
        """``{"x_mean", "x_std", "y_mean", "y_std"}`` as NumPy arrays (``None`` for a side not
        set), or ``None`` when neither side was set."""
        flags = self.backend.to_numpy(self.is_set)
        if not flags.any():
            return None
        out = {}
        for side, flag in zip("xy", flags):
            for stat in ("mean", "std"):
                out[f"{side}_{stat}"] = self.backend.to_numpy(getattr(self, f"{side}_{stat}")).copy() if flag else None
        return out

    def inputs(self, x):
        """(B, C_in, N) → (x - x_mean) / x_std per channel (NaN stays NaN)."""
        return (x - self._column(self.x_mean, x)) / self._column(self.x_std, x)

    def outputs(self, y):
        """Network output in normalised units (B, C_out, N) or (B, C_out) → user units."""
        return y * self._column(self.y_std, y) + self._column(self.y_mean, y)

    def targets(self, y):
        """Targets in user units → normalised units, the inverse of :meth:`outputs`."""
        return (y - self._column(self.y_mean, y)) / self._column(self.y_std, y)

    def _column(self, v, like):
        """(C,) → (1, C, 1) for (B, C, N) arrays, (1, C) for per-map (B, C) outputs."""
        return self.backend.xp.reshape(v, (1, -1) + (1,) * (len(like.shape) - 2))
