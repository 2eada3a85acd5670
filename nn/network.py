"""What every network shares: input checks, the output head's activation, ``fit``/``predict``
and portable weight files. Architectures only define their layers and ``_forward``."""

import numpy as np

from foscat_core._arrays import as_backend_array
from foscat_core._validation import check_nside, check_positive_int
from foscat_core.backends.dtypes import check_backend_dtype
from foscat_core.ordering import as_domain, check_nest

from . import losses, prediction, training
from .data_normalization import DataNormalization
from .missing import check_finite, input_channels, with_validity_channels
from .data_sources import check_label_range, host_inputs
from .data_sources import to_host as _to_host
from .checkpoint import assign_weights
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
        the check fails at run time with ``InvalidArgumentError``; under ``jax.jit`` with JAX's
        runtime error carrying the same message).
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
                      nest=True, mask_missing=False, domain=None):
        """Checks and attributes every network shares; ``domain``: the Domain of ``cell_ids`` when
        the subclass already built it (it is then not built, nor its ids checked, again)."""
        self.nest = check_nest(nest)
        if not isinstance(mask_missing, (bool, np.bool_)):
            raise TypeError(f"mask_missing must be True or False, got {mask_missing!r}")
        self.mask_missing = bool(mask_missing)
        # Plain attribute on every backend (tf.Module would wrap a dict in a tracking proxy).
        object.__setattr__(self, "config", dict(config, nest=self.nest, mask_missing=self.mask_missing))
        self.in_nside = check_nside(in_nside, "in_nside")
        if cell_ids is not None:
            cell_ids = np.asarray(cell_ids)  # also an xarray coordinate
        # The one geometry value of the network: every level, stencil and plan derives from it.
        self.domain = as_domain(self.in_nside, cell_ids, self.nest) if domain is None else domain
        # NESTED ids in the user's order (None only for a NESTED full sky).
        nested = None if cell_ids is None and self.nest else self.domain.cell_ids
        object.__setattr__(self, "nested_ids", nested)
        object.__setattr__(self, "cell_ids", None if cell_ids is None else cell_ids.astype(np.int64))
        self.n_cells = self.domain.n_cells
        self.n_chan_in = check_positive_int(n_chan_in, "n_chan_in")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.first_layer_channels = input_channels(self.n_chan_in, self.mask_missing)
        self.task = task
        self.final_activation = resolve_task(task, self.out_channels, final_activation)
        self.dtype = check_backend_dtype(dtype, self.backend)
        self.add_child("data_norm", DataNormalization(self.n_chan_in, self.out_channels, backend=self.backend,
                                                      dtype=self.dtype))

    def _init_checkpointing(self, checkpointing):
        """Check and record ``checkpointing`` (activation checkpointing of the blocks). The config
        holds it only when ``True``, so files written without it stay readable by code that
        predates the option (it rejects unknown config keys)."""
        if not isinstance(checkpointing, (bool, np.bool_)):
            raise TypeError(f"checkpointing must be True or False, got {checkpointing!r}")
        self.checkpointing = bool(checkpointing)
        if self.checkpointing:
            self.config["checkpointing"] = True

    def _block(self, fn, *args):
        """``fn(*args)``, through the framework's activation checkpointing when the network has
        ``checkpointing=True`` (the modules ``fn`` uses must be among ``args``)."""
        return self.fw.checkpoint(fn, *args) if self.checkpointing else fn(*args)

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
        return host_inputs(self, x, name)

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
        check_label_range(self, y, name)
        return y.astype(self.dtype, copy=False)

    # --- training ---------------------------------------------------------------------------
    def fit(self, x_train, y_train=None, x_val=None, y_val=None, n_epoch=100, batch_size=16, lr=1e-3,
            weight_decay=1e-5, view_epoch=10, loss_fn=None, seed=0, verbose=True, sample_weight=None,
            normalize=False, optimizer="adam", momentum=0.9, lr_schedule=None, patience=None, checkpoint=None,
            resume=False):
        """Train on arrays, DataArrays (read batch by batch) or an iterable of batches.

        Parameters
        ----------
        x_train : array (N, n_chan_in, N_cells), DataArray, or iterable of batches
            NumPy, framework tensors, lazy arrays (dask, zarr) or an ``xarray.DataArray`` (cell dim
            = the one with ``cell_ids``, its cells the network's; sample dim = the first other dim,
            channel dim = the next, if any). With ``y_train`` omitted: a re-iterable source of
            ``(x, y)`` or ``(x, y, w)`` batches (a torch ``DataLoader``, a ``tf.data.Dataset``, a
            list, any object with ``__iter__``, or a function returning a fresh iterator), read in
            its own order; a one-shot generator only serves ``n_epoch=1``. See
            :mod:`foscat_core.nn.data_sources`. NaN inputs need ``mask_missing=True``.
        y_train : array (N, out_channels, N_cells) or DataArray, optional
            NaN marks unlabelled cells: the default losses leave them out; a custom ``loss_fn``
            gets them as they are. Segmentation targets lie in [0, 1]; multi-class labels may
            also be integers (N, N_cells).
        x_val, y_val : optional
            Validation data, the same kinds (``y_val`` omitted: ``x_val`` yields pairs), evaluated
            after every epoch in evaluation mode.
        n_epoch, batch_size : int
            ``n_epoch`` counts every epoch, resumed ones included; ``batch_size`` is for arrays.
        lr, weight_decay : float
            Finite, ``lr > 0``, ``weight_decay >= 0`` (L2 for adam/sgd, decoupled for adamw).
        view_epoch : int
            Print a loss line every ``view_epoch`` epochs (0: never).
        loss_fn : callable, optional
            ``loss_fn(prediction, target[, weight]) -> backend scalar``; default
            :meth:`default_loss`. With normalisation it sees normalised units.
        seed : int
            Shuffling seed (array sources are shuffled each epoch; iterables are not).
        verbose : bool
        sample_weight : array, optional
            (N,) or broadcastable to the targets (N, out_channels, N_cells), >= 0, sliced with the
            samples; for iterables give ``(x, y, w)`` triples. Only a ``loss_fn`` taking a third
            argument receives weights (otherwise ``ValueError``).
        normalize : {False, True, "recompute"}
            ``True``: unless the network already holds a normalisation (a previous fit, a loaded
            file, :meth:`set_normalization`), compute per-channel mean and std of the inputs over
            finite cells (and of regression targets over labelled cells) in one streaming pass
            over the training data, and store them with :meth:`set_normalization`.
            ``"recompute"``: always compute. A resumed fit keeps the checkpoint's.
        optimizer : {"adam", "adamw", "sgd"}
            torch's optimisers (their step-for-step twins on TensorFlow, optax on JAX). The optimiser persists
            on the network: a later ``fit`` with the same ``optimizer`` (and ``momentum``)
            continues its state and step count, with the new ``lr``/``weight_decay``.
        momentum : float
            SGD's momentum, in [0, 1).
        lr_schedule : {None, "cosine", "step"} or callable
            ``epoch -> factor`` of ``lr`` (epochs from 0); ``"cosine"`` and ``"step"`` are
            :func:`~foscat_core.nn.optimizers.cosine_schedule` over ``n_epoch`` and
            :func:`~foscat_core.nn.optimizers.step_schedule` (÷10 every third of ``n_epoch``).
        patience : int, optional
            Stop after ``patience`` epochs without a lower validation loss (training loss
            without validation data), then restore the weights of the best epoch.
        checkpoint : path, optional
            Written atomically after every epoch: weights (with normalisation and batch-norm
            statistics), optimiser state, epochs done, shuffling state, history, early stopping.
        resume : bool
            Continue from ``checkpoint`` (which must exist) up to ``n_epoch`` epochs: the result
            equals an uninterrupted run.

        Returns
        -------
        dict
            ``"train_loss"``, ``"val_loss"`` (empty without validation data) and ``"lr"``: one
            value per epoch; ``"best_epoch"`` (from 0) with ``patience``.

        Notes
        -----
        Several devices: under an initialised ``torch.distributed`` process group (``torchrun``)
        or a ``tf.distribute.MirroredStrategy`` (network built inside ``strategy.scope()``),
        every replica reads the same global batches of ``batch_size`` samples (an iterable must
        yield the same batches on every rank: no ``DistributedSampler``) and takes its
        contiguous share of each (at least one sample, otherwise ``ValueError``); the gradients
        are summed weighted by share size, batch-norm statistics are those of the global batch,
        and the losses reported are the global batches'. With a mean loss the result is the
        single-process one on the same batches (up to rounding; Adam amplifies the rounding of
        gradients that are zero in exact arithmetic, such as a bias before a batch norm). Rank 0
        alone prints and writes ``checkpoint``. See ``backends/torch/distributed.py`` and
        ``backends/tensorflow/distributed.py``.

        Examples
        --------
        >>> import numpy as np
        >>> from foscat_core.nn import CNN
        >>> net = CNN(1, 1, [4], backend="torch", seed=0)
        >>> x = np.random.default_rng(0).normal(size=(6, 1, 12))        # (N, C_in, N_cells)
        >>> y = 2.0 * x
        >>> y[0, 0, :3] = np.nan                                         # unlabelled cells
        >>> batches = [(x[:3], y[:3]), (x[3:], y[3:])]                  # any re-iterable source
        >>> h = net.fit(batches, n_epoch=3, lr=1e-2, optimizer="adamw", lr_schedule="cosine", verbose=False)
        >>> len(h["train_loss"]), h["lr"][0]
        (3, 0.01)
        """
        return training.fit(self, x_train, y_train, x_val, y_val, n_epoch=n_epoch, batch_size=batch_size, lr=lr,
                            weight_decay=weight_decay, sample_weight=sample_weight, normalize=normalize,
                            optimizer=optimizer, momentum=momentum, lr_schedule=lr_schedule, patience=patience,
                            checkpoint=checkpoint, resume=resume, loss_fn=loss_fn, seed=seed, verbose=verbose,
                            view_epoch=view_epoch)

    def _batch(self, a):
        return self.backend.asarray(a, dtype=self.dtype)

    def _evaluator(self):
        fn = getattr(self, "_fc_evaluator", None)
        if fn is None:
            fn = self.fw.evaluator(self)
            object.__setattr__(self, "_fc_evaluator", fn)  # not a variable: kept out of tracking
        return fn

    def predict(self, x, batch_size=16, keep_missing=False):
        """Batched inference in evaluation mode, without gradient; safe from several threads.

        Parameters
        ----------
        x : array (N, n_chan_in, N_cells), DataArray, or iterable of batches
            As ``x_train`` of :meth:`fit`; lazy arrays and DataArrays are read ``batch_size``
            samples at a time; an iterable yields x batches (or tuples whose first item is x).
        batch_size : int
        keep_missing : bool
            ``True``: NaN in every output channel at cells where the input is NaN in every
            channel of every sample of ``x`` (a fixed mask such as land; gaps that move between
            samples, like clouds, are filled). By default (``mask_missing=True``) predictions
            are finite everywhere.

        Returns
        -------
        ndarray, shape (N, out_channels, N_cells), or DataArray
            A DataArray for a DataArray: its coordinates, dim order and cell order, the channel
            dim keeping its name (its coordinate dropped when out_channels differs; a dim
            ``"channel"`` is added when the input has none and out_channels > 1).

        Concurrent calls on one network are serialised (evaluation flips the training flag,
        which is restored before the next call runs), so running statistics, the training flag
        and every answer are as from a single thread.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        return prediction.predict(self, x, batch_size, keep_missing)

    def as_keras_layer(self, name=None):
        """This network as a ``keras.layers.Layer`` (Keras 3; a network built with ``backend="tensorflow"``).

        The layer's ``call(x, training=None)`` runs the forward, x (B, n_chan_in, N_cells) →
        (B, out_channels, N_cells) (GCNN with ``global_pool``: (B, nparam)); ``training``
        True/False sets the training flag for that call, ``None`` keeps it. Its
        ``trainable_weights`` and ``non_trainable_weights`` are this network's variables
        themselves (each wrapped, not copied, in a ``keras.Variable``), so
        ``keras.Model(...).fit(...)`` trains this network (its ``predict`` and ``save`` see the
        result) and ``model.save_weights`` / ``load_weights`` write and set them.

        Raises ``TypeError`` for a network on another backend, and ``ValueError`` under a mixed
        precision Keras policy (the network computes in its own ``dtype``).

        Examples
        --------
        >>> import keras, numpy as np
        >>> from foscat_core.nn import CNN
        >>> net = CNN(2, 1, [4], backend="tensorflow", seed=0)
        >>> model = keras.Sequential([keras.Input((1, 48)), net.as_keras_layer()])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> x = np.random.default_rng(0).normal(size=(8, 1, 48)).astype("float32")  # (B, C_in, N_cells)
        >>> _ = model.fit(x, 2 * x, epochs=2, verbose=0)
        >>> bool(np.allclose(model.predict(x, verbose=0), net.predict(x), atol=1e-5))
        True
        """
        return self.fw.keras_layer(self, name)

    # --- files ------------------------------------------------------------------------------
    def save(self, path):
        """Write config and weights to one portable ``.npz`` file (atomically)."""
        arrays = {name: self.backend.to_numpy(v) for name, v in self.named_variables()}
        write_weights(path, type(self).__name__, self.config, self.cell_ids, arrays)

    @classmethod
    def load(cls, path, backend=None, device=None):
        """A network from a file written by :meth:`save`, on any backend.

        Raises ``FileNotFoundError`` if there is no file at ``path``, and ``ValueError`` (naming
        the path) if it is not a network file (empty, truncated, corrupted, another format), or
        holds another architecture, another format version, or weights that do not match the
        architecture its config describes.
        """
        config, cell_ids, arrays, version = read_weights(path, cls)
        net = cls(**config, cell_ids=cell_ids, backend=backend, device=device)
        # A version 1 file was written before normalisation was stored: keep the identity.
        assign_weights(net, arrays, path, keep_prefix="data_norm." if version == 1 else None)
        return net
