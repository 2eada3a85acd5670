"""What every network shares: input checks, the output head's activation, ``fit``/``predict``
and portable weight files. Architectures only define their layers and ``_forward``."""

import numpy as np
from tqdm.auto import tqdm

from foscat_core._arrays import as_backend_array
from foscat_core._validation import check_dtype_name, check_nside, check_positive_int
from foscat_core.domain import Domain
from foscat_core.ordering import check_nest, nested_cell_ids

from . import losses
from .data_normalization import DataNormalization
from .missing import check_finite, input_channels, with_validity_channels
from .module import NativeModule
from .weights_file import read_weights, write_weights

TASKS = ("regression", "segmentation")
FINAL_ACTIVATIONS = ("none", "sigmoid", "softmax")


def resolve_task(task, out_channels, final_activation):
    """The head's activation: ``None`` picks the task's default (regression: none; segmentation:
    sigmoid with one output channel, softmax over channels otherwise)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if final_activation is None:
        if task == "regression":
            return "none"
        return "sigmoid" if out_channels == 1 else "softmax"
    if final_activation not in FINAL_ACTIVATIONS:
        raise ValueError(f"final_activation must be None or one of {FINAL_ACTIVATIONS}, got {final_activation!r}")
    return final_activation


class Network(NativeModule):
    """Base of the ready networks (see :class:`HealpixUNet` for the common parameters).

    Not instantiated directly: :class:`~foscat_core.nn.HealpixUNet`, :class:`~foscat_core.nn.CNN`,
    :class:`~foscat_core.nn.HealpixViT` and :class:`~foscat_core.nn.GCNN` derive from it and get
    the input checks of :meth:`forward`, the output activation, :meth:`fit`, :meth:`predict`,
    :meth:`save` and :meth:`load`.

    Parameters
    ----------
    in_nside : int
        nside of the input maps.
    n_chan_in : int
        C_in, channels of the input.
    cell_ids : array_like of int, shape (N_cells,), optional
        Ids of a regional domain in the ``nest`` ordering, any order (outputs follow it); an
        xarray ``cell_ids`` coordinate works too. ``None`` = full sky (N_cells = 12 in_nside²,
        in the ``nest`` ordering).
    nest : bool
        healpy's meaning: ``True`` NESTED ids, ``False`` RING ids; with ``False`` the cell axis of
        inputs and outputs is in RING order (the user's order of ``cell_ids``).
    mask_missing : bool
        ``True``: NaN inputs are missing cells, filled with 0 and flagged by one validity channel
        per input channel (the first layer sees 2 C_in channels; ``n_chan_in`` is unchanged), so
        predictions are finite everywhere. ``False``: a NaN or infinite input is refused with a
        ``ValueError`` in training and evaluation mode alike (inside a TensorFlow ``tf.function``
        the check fails at run time with ``InvalidArgumentError``).
    out_channels : int
        C_out, channels of the output.
    task : {"regression", "segmentation"}
    final_activation : {None, "none", "sigmoid", "softmax"}
        ``None`` picks the task's default: none for regression; sigmoid with one output channel,
        softmax over channels otherwise.
    device : str, optional
    dtype : {"float32", "float64"}
    backend : str or Backend, optional

    These are keyword names of the subclasses' constructors (some subclasses name the output
    size differently, e.g. ``nparam``). Shapes: x (B, C_in, N_cells) → (B, C_out, N_cells).

    Attributes
    ----------
    cell_ids : ndarray of int64, shape (N_cells,), or None
        The ids as the user gave them (in the ``nest`` ordering); ``None`` for a full sky.
    nest, mask_missing : bool
    domain : Domain
        The cells as NESTED ids, in the order of the cell axis (what the layers work on).
    normalization : dict or None
        See :meth:`set_normalization`.

    Normalisation: :meth:`set_normalization` stores per-channel input (and, for regression,
    target) means and standard deviations with the model; the forward standardises the inputs
    and returns regression outputs in the user's units.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from foscat_core.nn import HealpixUNet, Network
    >>> net = HealpixUNet(2, 1, [2, 4], backend="numpy", seed=0)
    >>> isinstance(net, Network), net.task, net.final_activation, net.n_cells
    (True, 'regression', 'none', 48)
    >>> x = np.zeros((3, 1, 48), "float32")  # (B, C_in, N_cells)
    >>> net.predict(x, batch_size=2).shape
    (3, 1, 48)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "unet.npz")
    ...     net.save(path)
    ...     same = HealpixUNet.load(path, backend="numpy")
    >>> bool(np.array_equal(same.predict(x), net.predict(x)))
    True

    Missing inputs, RING order and stored normalisation:

    >>> ring = HealpixUNet(2, 1, [2, 4], nest=False, mask_missing=True, backend="numpy", seed=0)
    >>> ring.set_normalization([1.0], [2.0], [10.0], [3.0])
    >>> x[0, 0, :5] = np.nan                         # missing cells
    >>> bool(np.isfinite(ring(x)).all()), sorted(ring.normalization)
    (True, ['x_mean', 'x_std', 'y_mean', 'y_std'])
    >>> net(x)
    Traceback (most recent call last):
    ...
    ValueError: x contains NaN or infinite values; build the network with mask_missing=True to treat NaN inputs as missing cells
    """

    def _init_network(self, config, in_nside, n_chan_in, cell_ids, out_channels, task, final_activation, dtype,
                      nest=True, mask_missing=False):
        self.nest = check_nest(nest)
        if not isinstance(mask_missing, (bool, np.bool_)):
            raise TypeError(f"mask_missing must be True or False, got {mask_missing!r}")
        self.mask_missing = bool(mask_missing)
        # Plain attribute on every backend (tf.Module would wrap a dict in a tracking proxy).
        object.__setattr__(self, "config", dict(config, nest=self.nest, mask_missing=self.mask_missing))
        self.in_nside = check_nside(in_nside, "in_nside")
        if cell_ids is not None:
            cell_ids = np.asarray(cell_ids)  # also an xarray coordinate
        # NESTED ids in the user's order (None only for a NESTED full sky): what the layers use.
        object.__setattr__(self, "nested_ids", nested_cell_ids(self.in_nside, cell_ids, self.nest))
        self.domain = Domain(self.in_nside, self.nested_ids)
        object.__setattr__(self, "cell_ids", None if cell_ids is None else cell_ids.astype(np.int64))
        self.n_cells = self.domain.n_cells
        self.n_chan_in = check_positive_int(n_chan_in, "n_chan_in")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.first_layer_channels = input_channels(self.n_chan_in, self.mask_missing)
        self.task = task
        self.final_activation = resolve_task(task, self.out_channels, final_activation)
        self.dtype = check_dtype_name(dtype)
        self.add_child("data_norm", DataNormalization(self.n_chan_in, self.out_channels, backend=self.backend,
                                                      dtype=self.dtype))

    # --- normalisation ----------------------------------------------------------------------
    def set_normalization(self, x_mean=None, x_std=None, y_mean=None, y_std=None):
        """Store per-channel normalisation constants with the model (saved in its weight file).

        Parameters
        ----------
        x_mean, x_std : array_like, shape (n_chan_in,), optional
            The forward computes ``(x - x_mean) / x_std`` per input channel first.
        y_mean, y_std : array_like, shape (out_channels,), optional
            Regression only: the network's raw output ``out`` becomes ``out * y_std + y_mean``,
            so outputs are in the targets' units (train against :meth:`normalize_target`).

        ``None`` leaves a side the identity; ``set_normalization()`` resets both. Means must be
        finite and standard deviations finite and > 0, otherwise ``ValueError``.
        """
        if y_mean is not None and self.task != "regression":
            raise ValueError(f"y_mean/y_std normalise regression targets; this network's task is {self.task!r}")
        self.data_norm.set(x_mean, x_std, y_mean, y_std)

    @property
    def normalization(self):
        """``{"x_mean", "x_std", "y_mean", "y_std"}`` (NumPy, ``None`` for a side not set), or
        ``None`` when no normalisation was set."""
        return self.data_norm.as_dict()

    def normalize_target(self, y):
        """Targets (N, out_channels, N_cells) (or the output's shape) in user units → backend
        array ``(y - y_mean) / y_std`` per channel, the units the loss is computed in (NaN stays
        NaN; the identity without target normalisation)."""
        return self.data_norm.targets(as_backend_array(self.backend, y, "y", self.dtype))

    @classmethod
    def from_grid(cls, da, **kwargs):
        """A network on the HEALPix grid of an xarray DataArray (xdggs convention).

        ``in_nside``, ``cell_ids`` and ``nest`` are read from ``da`` (its ``cell_ids`` coordinate
        and grid attributes, see :func:`foscat_core.xarray_io.grid_of`); every other keyword
        (``n_chan_in``, ``chanlist``, ...) goes to the constructor. Giving one of those three
        explicitly with another value is a ``ValueError``.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> from foscat_core.nn import CNN
        >>> attrs = {"grid_name": "healpix", "level": 1, "indexing_scheme": "ring"}
        >>> da = xr.DataArray(np.zeros((3, 1, 4)), dims=("time", "channel", "cells"),
        ...                   coords={"cell_ids": ("cells", [0, 4, 13, 20], attrs)})
        >>> net = CNN.from_grid(da, n_chan_in=1, chanlist=[4], backend="numpy")
        >>> net.in_nside, net.nest, net.cell_ids
        (2, False, array([ 0,  4, 13, 20]))
        """
        from foscat_core.xarray_io import grid_of

        grid = grid_of(da, "da")
        given = {"in_nside": grid.nside, "cell_ids": grid.cell_ids, "nest": grid.nest}
        for key, value in given.items():
            if key in kwargs and kwargs[key] is not None and not np.array_equal(np.asarray(kwargs[key]), value):
                raise ValueError(f"from_grid reads {key} from the grid of da ({value if key != 'cell_ids' else 'its cell_ids coordinate'}); "
                                 f"got a different {key}={kwargs[key]!r}")
        return cls(**{**kwargs, **given})

    # --- forward ----------------------------------------------------------------------------
    def forward(self, x):
        """``x`` (B, n_chan_in, N_cells) backend tensor (or NumPy) → (B, out_channels, N_cells).

        Standardises ``x`` with the stored normalisation, handles NaN as ``mask_missing`` says
        (before any layer, so batch-norm statistics never see a NaN), and returns regression
        outputs in the targets' units.
        """
        x = as_backend_array(self.backend, x, "x", self.dtype)
        if len(x.shape) != 3:
            raise ValueError(f"x must have shape (B, C_in, N_cells), got shape {tuple(x.shape)}")
        if int(x.shape[1]) != self.n_chan_in:
            raise ValueError(f"x has {int(x.shape[1])} channels but the network expects n_chan_in={self.n_chan_in}")
        if int(x.shape[2]) != self.n_cells:
            raise ValueError(f"x has {int(x.shape[2])} cells but the network's domain has N_cells={self.n_cells}")
        if self.mask_missing:
            x = with_validity_channels(self.backend, self.fw, self.data_norm.inputs(x))
        else:
            x = self.data_norm.inputs(check_finite(self.fw, x))
        y = self._activate(self._forward(x))
        return self.data_norm.outputs(y) if self.task == "regression" else y

    def _activate(self, y):
        if self.final_activation == "sigmoid":
            return self.fw.sigmoid(y)
        if self.final_activation == "softmax":
            return self.fw.softmax(y, axis=1)
        return y

    def default_loss(self):
        """MSE for regression; binary / categorical cross-entropy for segmentation."""
        return losses.default_loss(self.backend, self.task, self.final_activation)

    # --- host data --------------------------------------------------------------------------
    def _host_inputs(self, x, name):
        x = _to_host(self.backend, x, name)
        if x.ndim != 3 or x.shape[1] != self.n_chan_in or x.shape[2] != self.n_cells:
            raise ValueError(f"{name} must have shape (N, {self.n_chan_in}, {self.n_cells}), got {x.shape}")
        return x.astype(self.dtype, copy=False)

    def _host_targets(self, y, name, n_samples):
        y = _to_host(self.backend, y, name)
        if self.task == "segmentation" and self.out_channels > 1 and np.issubdtype(y.dtype, np.integer):
            y = losses.one_hot(y, self.out_channels, self.n_cells, name)
        elif self.task == "segmentation" and y.ndim == 2 and self.out_channels == 1:
            y = y[:, None, :]  # binary masks (N, N_cells), e.g. booleans or 0/1 labels
        if y.ndim != 3 or y.shape[1:] != (self.out_channels, self.n_cells):
            raise ValueError(f"{name} must have shape (N, {self.out_channels}, {self.n_cells}), got {y.shape}")
        if y.shape[0] != n_samples:
            raise ValueError(f"{name} has {y.shape[0]} samples but the inputs have {n_samples}")
        return y.astype(self.dtype, copy=False)

    # --- training ---------------------------------------------------------------------------
    def fit(self, x_train, y_train, x_val=None, y_val=None, n_epoch=100, batch_size=16, lr=1e-3,
            weight_decay=1e-5, view_epoch=10, loss_fn=None, seed=0, verbose=True):
        """Train with Adam (L2 ``weight_decay``), shuffled mini-batches.

        Parameters
        ----------
        x_train : array, shape (N, n_chan_in, N_cells)
            NumPy or backend tensors.
        y_train : array, shape (N, out_channels, N_cells)
            For multi-class segmentation also integer labels (N, N_cells) or (N, 1, N_cells).
        x_val, y_val : arrays, optional
            Validation set, evaluated after every epoch in evaluation mode.
        n_epoch, batch_size : int
        lr, weight_decay : float
        view_epoch : int
            Print a loss line every ``view_epoch`` epochs (0: never).
        loss_fn : callable, optional
            ``loss_fn(prediction, target) -> backend scalar``; default :meth:`default_loss`.
        seed : int
            Shuffling seed.
        verbose : bool
            Progress bar and loss lines.

        Returns
        -------
        dict
            ``{"train_loss": [...], "val_loss": [...]}``, one float per epoch.
        """
        n_epoch = check_positive_int(n_epoch, "n_epoch")
        batch_size = check_positive_int(batch_size, "batch_size")
        xs = self._host_inputs(x_train, "x_train")
        if len(xs) == 0:
            raise ValueError("x_train holds no samples: fit needs at least one (N >= 1)")
        ys = self._host_targets(y_train, "y_train", len(xs))
        if (x_val is None) != (y_val is None):
            raise ValueError("x_val and y_val must be given together")
        if x_val is not None:
            xv = self._host_inputs(x_val, "x_val")
            yv = self._host_targets(y_val, "y_val", len(xv))
        loss_fn = loss_fn or self.default_loss()
        step = self.fw.trainer(self, loss_fn, float(lr), float(weight_decay))
        rng = np.random.default_rng(seed)
        history = {"train_loss": [], "val_loss": []}
        bar = tqdm(range(n_epoch), desc=f"fit {type(self).__name__} ({self.backend.name})", disable=not verbose)
        for epoch in bar:
            self.train()
            order = rng.permutation(len(xs))
            total = 0.0
            for start in range(0, len(xs), batch_size):
                idx = order[start:start + batch_size]
                total += step(self._batch(xs[idx]), self._batch(ys[idx])) * len(idx)
            history["train_loss"].append(total / len(xs))
            line = {"train": f"{history['train_loss'][-1]:.4g}"}
            if x_val is not None:
                history["val_loss"].append(self._evaluate(xv, yv, batch_size, loss_fn))
                line["val"] = f"{history['val_loss'][-1]:.4g}"
            bar.set_postfix(line)
            if verbose and view_epoch and (epoch + 1) % view_epoch == 0:
                tqdm.write(f"epoch {epoch + 1}/{n_epoch}  " + "  ".join(f"{k} {v}" for k, v in line.items()))
        self.train()
        return history

    def _batch(self, a):
        return self.backend.asarray(a, dtype=self.dtype)

    def _evaluate(self, xs, ys, batch_size, loss_fn):
        total = 0.0
        with _eval_mode(self):
            run = self._evaluator()
            for start in range(0, len(xs), batch_size):
                pred = run(self._batch(xs[start:start + batch_size]))
                value = loss_fn(pred, self._batch(ys[start:start + batch_size]))
                total += float(self.backend.to_numpy(value)) * len(xs[start:start + batch_size])
        return total / len(xs)

    def _evaluator(self):
        fn = getattr(self, "_fc_evaluator", None)
        if fn is None:
            fn = self.fw.evaluator(self)
            object.__setattr__(self, "_fc_evaluator", fn)  # not a variable: kept out of tracking
        return fn

    def predict(self, x, batch_size=16):
        """Batched inference in evaluation mode, without gradient.

        Parameters
        ----------
        x : array, shape (N, n_chan_in, N_cells)
        batch_size : int

        Returns
        -------
        ndarray, shape (N, out_channels, N_cells)
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        xs = self._host_inputs(x, "x")
        outs = []
        with _eval_mode(self):
            run = self._evaluator()
            for start in range(0, len(xs), batch_size):
                outs.append(self.backend.to_numpy(run(self._batch(xs[start:start + batch_size]))))
        if not outs:
            return np.zeros((0, self.out_channels, self.n_cells), dtype=self.dtype)
        return np.concatenate(outs, axis=0)

    # --- files ------------------------------------------------------------------------------
    def save(self, path):
        """Write config and weights to one portable ``.npz`` file (atomically)."""
        arrays = {name: self.backend.to_numpy(v) for name, v in self.named_variables()}
        write_weights(path, type(self).__name__, self.config, self.cell_ids, arrays)

    @classmethod
    def load(cls, path, backend=None, device=None):
        """A network from a file written by :meth:`save`, on any backend.

        Raises ``ValueError`` if the file holds another architecture, another format version, or
        weights that do not match the architecture its config describes.
        """
        config, cell_ids, arrays = read_weights(path, cls.__name__)
        net = cls(**config, cell_ids=cell_ids, backend=backend, device=device)
        expected = dict(net.named_variables())
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        if missing or extra:
            raise ValueError(f"{path}: weights do not match {cls.__name__} (missing {missing[:5]}, unexpected {extra[:5]})")
        for name, variable in expected.items():
            if tuple(arrays[name].shape) != tuple(int(s) for s in variable.shape):
                raise ValueError(f"{path}: {name} has shape {arrays[name].shape}, expected {tuple(variable.shape)}")
        for name, variable in expected.items():
            net.fw.assign(variable, arrays[name])
        return net


class _eval_mode:
    def __init__(self, net):
        self.net = net

    def __enter__(self):
        self.was_training = self.net.training
        self.net.eval()

    def __exit__(self, *exc):
        self.net.train(self.was_training)


def _to_host(backend, x, name):
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if backend.is_native(x):
        x = backend.to_numpy(x)
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers: {err}") from err
    if x.dtype == np.bool_:
        x = x.astype(np.float64)  # masks and binary labels
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x
