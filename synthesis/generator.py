"""``Generator``: a decoder network on the HEALPix pyramid, trained to match scattering
statistics, that draws new maps in one forward pass.

L-BFGS synthesis (:class:`~foscat_core.synthesis.Synthesis`) optimises each new map from
scratch; a generator pays that cost once, in :meth:`Generator.fit`, and then samples maps at
the cost of a forward pass (milliseconds per map). The network is written once and built as a
``torch.nn.Module`` (torch), a ``tf.Module`` (TensorFlow), a ``flax.nnx.Module`` (JAX) or a
plain class (NumPy: sampling only), like the networks of :mod:`foscat_core.nn`; its weights go to the portable weight file,
so a generator trained in torch samples the same maps in TensorFlow for the same seed.
"""


import numpy as np

from foscat_core._arrays import as_backend_array
from foscat_core._validation import check_dtype_name, check_kernel_size, check_nside, check_positive_int
from foscat_core.domain import Domain
from foscat_core.nn.checkpoint import assign_weights
from foscat_core.nn.layers import PointwiseConv, Up, make_stencil
from foscat_core.nn.module import NativeModule
from foscat_core.nn.training import eval_mode
from foscat_core.nn.weights_file import read_weights, write_weights
from foscat_core.ordering import check_nest, nested_cell_ids

from . import generator_training
from .generator_model import (HybridFineBlock, LevelBlock, SubpixelUp, check_count, check_fine_level, check_norm,
                              check_output, gaussian_quantiles, quantile_output, sinh_arcsinh, draw_noise,
                              noise_shapes, pyramid_levels, resolve_convs, resolve_levels, sample_seeds)


class Generator(NativeModule):
    """A HEALPix decoder from coarse latent noise to maps on a full-sky or regional domain.

    Levels go from ``latent_nside`` (the domain's ancestor cells there) up to ``nside``, one
    ``nside`` doubling per level. The latent noise (``latent_channels`` maps at ``latent_nside``)
    goes through a block ``(SphericalConv -> norm -> ReLU) x n_convs`` on the level's oriented
    K x K stencil; between levels an ``Up`` copies each cell's features to its four children and
    ``noise_channels`` fresh noise maps are concatenated (fine scales get their own randomness).
    With ``fine_level="subpixel"`` the up-step into the finest level is learned instead: a
    convolution on the parent level gives each of the four children its own channels (a
    sub-pixel convolution, 4x fewer cells than a convolution at ``nside``), followed by 1x1
    convolutions with norm and ReLU; ``fine_level="hybrid"`` feeds that sub-pixel convolution the
    finest level's noise too (drawn at the parent level, four channels per noise map). A 1x1 head
    maps the finest level's channels to one, ``u``, and the output is ``out_mean + out_std * T(u)``
    (``out_mean``, ``out_std`` set by :meth:`fit` from the target's mean and variance, and saved
    with the weights; ``T`` the learned sinh-arcsinh transform, or the identity with
    ``output="linear"``); with ``output="quantile"`` each sample then takes the target's values
    in the order of that map's ranks. All the noise is drawn with NumPy from a seed, so
    samples are the same on every backend.

    Parameters
    ----------
    nside : int
        Resolution of the generated maps (a power of two).
    cell_ids : array_like of int, shape (N_cells,), optional
        A regional domain: ids in the ``nest`` ordering, any order (samples follow it);
        ``None`` = full sky (N_cells = 12 nside**2).
    nest : bool
        healpy's meaning: ``False`` for RING ids and a RING cell axis (in and out).
    latent_channels : int
        Channels of the latent noise at ``latent_nside``.
    chanlist : list of int, optional
        Channels per level, **finest level first** (as :class:`~foscat_core.nn.HealpixUNet`'s,
        whose last entry is the coarsest level); ``len(chanlist)`` levels, so
        ``latent_nside = nside / 2**(len(chanlist) - 1)``. Default: 8 at ``nside`` doubling per
        coarser level up to 64, over the levels ``latent_nside`` implies.
    KERNELSZ : int
        Odd stencil side K of the spherical convolutions.
    latent_nside : int, optional
        Resolution of the latent noise; default ``nside / 2**(len(chanlist) - 1)``, or
        ``max(1, nside // 8)`` when ``chanlist`` is not given either. Must agree with
        ``chanlist`` when both are given.
    noise_channels : int
        Noise maps concatenated at every level above the latent one (0: none, every sample is a
        function of the latent noise only).
    n_convs : int or list of int, optional
        Convolutions per level (a list: finest level first; with ``fine_level="subpixel"`` the
        finest entry counts its 1x1 convolutions). Default: 1 at ``nside`` (the costliest level),
        2 at every coarser level.
    norm : {"instance", "batch", "group", "none"}
        Normalisation after every convolution. ``"instance"`` (default) normalises each sample
        on its own: a sample does not depend on the batch it is drawn in, and training and
        sampling behave alike.
    gauge_type : {"phi", "cosmo"}
        Stencil gauge (see :class:`foscat_core.SphericalStencil`).
    fine_level : {"conv", "hybrid", "subpixel"}
        How the finest level is made (with two levels or more): ``"conv"`` (default): copy-up
        like the other levels, then the K x K block at ``nside``; ``"subpixel"``: as above, about
        half the sampling cost at the finest level, but its fine-scale texture is 1x1 mixing of
        white noise (the finest octave of power is lost); ``"hybrid"``: the sub-pixel
        convolution reads the parent level's features and the finest level's noise (drawn at
        the parent level, four channels per noise map), then norm + ReLU (and ``n_convs - 1``
        1x1 convolutions): ~25% faster sampling than ``"conv"``, but in 300-step trainings at
        nside 32 it kept only half the power of the two finest octaves (see
        ``benchmarks/README.md``).
    output : {"sinh-arcsinh", "linear", "quantile"}
        The output map ``out_mean + out_std * T(u)`` of the head's ``u``: ``"sinh-arcsinh"``
        (default) ``T(u) = sinh(exp(log_delta) asinh(u) - skew)`` with two learned numbers
        (``out_log_delta``, ``out_skew``, zero at first: the identity), a monotone map that gives
        the samples the target's skewness and tails; ``"linear"``: ``T(u) = u``;
        ``"quantile"`` (it needs target maps, not statistics): each sample takes the target's
        values (``out_quantiles``, its sorted values, set by :meth:`fit` from target maps;
        standard normal quantiles before) in the order of the ranks of ``out_mean + out_std * u``,
        so its histogram is the target's exactly; trained straight-through (the gradient passes
        the re-ranking as the identity). At nside 64, ``output="quantile"`` with
        ``fit(..., spectrum=10, n_iter=800)`` met every quality target of ``benchmarks/README.md``;
        it is not the default because in short trainings at small nside the scattering distance
        then fell less than with ``"sinh-arcsinh"``.
    backend : str or Backend, optional
        ``"torch"``, ``"tensorflow"``, ``"jax"`` (train and sample) or ``"numpy"`` (sample only).
    dtype : {"float32", "float64"}
    seed : int, optional
        Weight initialisation seed (the same network on every backend); ``None``: a random one,
        recorded in :attr:`config`.
    device : str, optional
        Framework device, e.g. ``"cuda:0"``.

    Attributes
    ----------
    n_cells : int
    levels : list of (int, ndarray or None)
        ``(nside, NESTED ids)`` per level, latent level first (``None``: NESTED full sky).
    config : dict
        The constructor arguments (what :meth:`save` writes).

    Shapes: ``forward(noise)`` with ``noise`` a list, per level, of (B, C_l, N_l) arrays (see
    :meth:`draw_noise`) → (B, N_cells) maps.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.synthesis import Generator
    >>> gen = Generator(8, chanlist=[4, 8], latent_channels=4, backend="numpy", seed=0)
    >>> gen.latent_nside, gen.n_cells
    (4, 768)
    >>> maps = gen.sample(3, seed=1)                       # (n, N_cells) NumPy
    >>> maps.shape, bool(np.array_equal(maps, gen.sample(3, seed=1)))
    ((3, 768), True)
    >>> bool(np.array_equal(gen.sample(5, seed=1)[:3], maps))   # sample i depends on (seed, i) only
    True

    A regional domain in RING order:

    >>> import healpy as hp
    >>> disc = hp.query_disc(8, hp.ang2vec(1.0, 0.5), 0.6)          # RING ids
    >>> region = Generator(8, cell_ids=disc, nest=False, chanlist=[4, 8], backend="numpy", seed=0)
    >>> region.sample(2, seed=0).shape == (2, len(disc))
    True
    """

    def __init__(self, nside, cell_ids=None, nest=True, latent_channels=8, chanlist=None, KERNELSZ=3,
                 latent_nside=None, noise_channels=1, n_convs=None, norm="instance", gauge_type="phi",
                 fine_level="conv", output="sinh-arcsinh", backend=None, dtype="float32", seed=None, device=None):
        super().__init__(backend=backend, device=device)
        self.nside = check_nside(nside, "nside")
        self.nest = check_nest(nest)
        self.dtype = check_dtype_name(dtype)
        latent_channels = check_positive_int(latent_channels, "latent_channels")
        noise_channels = check_count(noise_channels, "noise_channels", 0)
        KERNELSZ = check_kernel_size(KERNELSZ, "KERNELSZ")
        norm = check_norm(norm)
        fine_level = check_fine_level(fine_level)
        output = check_output(output)
        chanlist, latent_nside = resolve_levels(self.nside, chanlist, latent_nside)
        n_convs = resolve_convs(n_convs, len(chanlist))
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        seed = check_count(seed, "seed", 0)
        if cell_ids is not None:
            cell_ids = np.asarray(cell_ids)
        nested = nested_cell_ids(self.nside, cell_ids, self.nest)
        object.__setattr__(self, "nested_ids", nested)
        object.__setattr__(self, "cell_ids", None if cell_ids is None else cell_ids.astype(np.int64))
        self.domain = Domain(self.nside, nested)
        self.n_cells = self.domain.n_cells
        self.latent_nside = latent_nside
        object.__setattr__(self, "chanlist", chanlist)  # a plain list (tf.Module would wrap it)
        self.latent_channels, self.noise_channels = latent_channels, noise_channels
        object.__setattr__(self, "config", dict(
            nside=self.nside, nest=self.nest, latent_channels=latent_channels, chanlist=chanlist,
            KERNELSZ=KERNELSZ, latent_nside=latent_nside, noise_channels=noise_channels, n_convs=n_convs,
            norm=norm, gauge_type=gauge_type, fine_level=fine_level, output=output, dtype=self.dtype, seed=seed))
        levels = pyramid_levels(self.nside, nested, len(chanlist))
        object.__setattr__(self, "levels", levels)
        sizes = [12 * ns * ns if ids is None else len(ids) for ns, ids in levels]
        object.__setattr__(self, "_noise_sizes", sizes)
        noise_channels_per_level = noise_shapes(latent_channels, noise_channels, sizes)
        hybrid = fine_level == "hybrid" and len(levels) > 1
        if hybrid:  # the finest level's noise drawn at the parent level, 4 channels (children) per map
            sizes[-1], noise_channels_per_level[-1] = sizes[-2], 4 * noise_channels
        object.__setattr__(self, "_noise_channels", noise_channels_per_level)
        object.__setattr__(self, "_hybrid", hybrid)
        channels = chanlist[::-1]  # coarse to fine
        seeds = iter(np.random.SeedSequence(seed).generate_state(sum(n_convs) + 2))
        blocks, ups, repeat, c_prev, stencil = [], [], [], 0, None
        for i, ((ns, ids), c, k) in enumerate(zip(levels, channels, n_convs[::-1])):
            c_in = c_prev + self._noise_channels[i]
            subpixel = i > 0 and i + 1 == len(levels) and fine_level != "conv"
            if subpixel:  # the finest level: learned up from the parent level
                up_in = c_prev + self._noise_channels[i] if hybrid else c_prev
                ups.append(SubpixelUp(up_in, c, stencil, levels[i - 1][1], ids, next(seeds)))
                c_in = c + self._noise_channels[i]
            stencil = make_stencil(ns, ids, KERNELSZ, gauge_type, 1, self.backend, self.dtype)
            level_seeds = [next(seeds) for _ in range(k)]
            if subpixel and hybrid:  # norm + ReLU, then n_convs - 1 times 1 x 1
                blocks.append(HybridFineBlock(c, stencil, norm, k, level_seeds[1:]))
            else:  # subpixel: 1 x 1 convolutions of (up, noise)
                blocks.append(LevelBlock(c_in, c, stencil, norm, k, level_seeds, pointwise=subpixel))
            if i + 1 < len(levels) and not (i + 2 == len(levels) and fine_level != "conv"):
                ups.append(Up(ns, ids, levels[i + 1][1], backend=self.backend))
                # Children stored parent by parent (a NESTED full sky, or a region holding whole
                # quads in that order): up is a broadcast, not a gather.
                positions = ups[-1].plan.positions
                repeat.append(positions.size == 4 * sizes[i] and
                              np.array_equal(positions, np.repeat(np.arange(sizes[i]), 4)))
            c_prev = c
        object.__setattr__(self, "_up_repeat", repeat)
        self.add_child("blocks", blocks)
        self.add_child("ups", ups)
        self.add_child("head", PointwiseConv(chanlist[0], 1, backend=self.backend, dtype=self.dtype,
                                             seed=next(seeds)))
        self.add_state("out_mean", np.zeros(1), self.dtype)
        self.add_state("out_std", np.ones(1), self.dtype)
        if output == "sinh-arcsinh":  # T(u) = sinh(exp(log_delta) asinh(u) - skew); identity at 0, 0
            self.add_parameter("out_log_delta", np.zeros(1), self.dtype)
            self.add_parameter("out_skew", np.zeros(1), self.dtype)
        if output == "quantile":
            self.add_state("out_quantiles", gaussian_quantiles(self.n_cells), self.dtype)

    def __repr__(self):
        domain = "full sky" if self.cell_ids is None else f"{self.n_cells} cells"
        return (f"Generator(nside={self.nside}, {domain}{'' if self.nest else ', RING'}, latent_nside="
                f"{self.latent_nside}, chanlist={self.chanlist}, backend={self.backend.name!r}, "
                f"{self.n_parameters()} parameters)")

    # --- noise and forward -------------------------------------------------------------------
    def draw_noise(self, n, seed=None):
        """The network's input for ``n`` samples: a list, latent level first, of NumPy arrays
        (n, C_l, N_l) of standard normal noise (float32), sample ``i`` drawn from the ``i``-th
        seed spawned from ``seed`` (``None``: fresh entropy)."""
        n = check_positive_int(n, "n")
        return self._noise(sample_seeds(seed, n))

    def _noise(self, seeds):
        return draw_noise(seeds, self._noise_channels, self._noise_sizes, self.dtype)

    def forward(self, noise):
        """``noise`` (a list per level of (B, C_l, N_l) arrays, as :meth:`draw_noise` gives) →
        maps (B, N_cells), a backend tensor."""
        if not isinstance(noise, (list, tuple)) or len(noise) != len(self.levels):
            raise TypeError(f"noise must be a list of {len(self.levels)} arrays (one per level, from draw_noise), "
                            f"got {type(noise).__name__}")
        xp = self.backend.xp
        z = [as_backend_array(self.backend, a, f"noise[{i}]", self.dtype) for i, a in enumerate(noise)]
        h, last = None, len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i == last and self._hybrid:  # the noise joins the features on the parent level
                h = block(self.ups[i - 1](xp.concat([h, z[i]], axis=1) if self._noise_channels[i] else h))
                break
            parts = ([] if h is None else [self._up(i - 1, h)]) + ([z[i]] if self._noise_channels[i] else [])
            h = block(parts[0] if len(parts) == 1 else xp.concat(parts, axis=1))
        y = self.head(h)[:, 0, :]
        if self.config["output"] == "sinh-arcsinh":
            y = sinh_arcsinh(xp, y, self.out_log_delta, self.out_skew)
        y = self.out_mean + self.out_std * y
        if self.config["output"] == "quantile":
            y = quantile_output(self.backend, y, self.out_quantiles)
        return y

    def _up(self, i, h):
        if i >= len(self._up_repeat) or not self._up_repeat[i]:
            return self.ups[i](h)
        xp, shape = self.backend.xp, tuple(int(d) if d is not None else -1 for d in h.shape)
        ones = self._ones4()
        return xp.reshape(h[:, :, :, None] * ones, (shape[0], shape[1], 4 * shape[2]))

    def _ones4(self):
        ones = self.__dict__.get("_fc_ones4")
        if ones is None:
            ones = self.backend.asarray(np.ones(4), dtype=self.dtype)
            object.__setattr__(self, "_fc_ones4", ones)
        return ones

    # --- sampling ----------------------------------------------------------------------------
    def sample(self, n, seed=None, as_numpy=True, batch_size=16):
        """Draw ``n`` new maps, in evaluation mode without gradient.

        Parameters
        ----------
        n : int
            Number of maps.
        seed : int, optional
            Sample ``i`` depends only on ``(seed, i)`` (not on ``n``, ``batch_size`` or the
            backend); ``None``: fresh noise at every call.
        as_numpy : bool
            ``False``: a backend tensor.
        batch_size : int
            Maps per forward pass.

        Returns
        -------
        ndarray (or backend tensor), shape (n, N_cells)
            In the ``nest`` ordering of the domain, ``cell_ids``' order for a region.
        """
        n = check_positive_int(n, "n")
        batch_size = check_positive_int(batch_size, "batch_size")
        if not isinstance(as_numpy, (bool, np.bool_)):
            raise TypeError(f"as_numpy must be True or False, got {as_numpy!r}")
        seeds = sample_seeds(seed, n)
        run = self._evaluator()
        out = []
        with eval_mode(self), self.fw.no_grad():
            for start in range(0, n, batch_size):
                noise = self._noise(seeds[start:start + batch_size])
                y = run([self.backend.asarray(a, dtype=self.dtype) for a in noise])
                out.append(self.backend.to_numpy(y) if as_numpy else y)
        if as_numpy:
            return np.concatenate(out, axis=0)
        return out[0] if len(out) == 1 else self.backend.xp.concat(out, axis=0)

    def _evaluator(self):
        fn = self.__dict__.get("_fc_evaluator")
        if fn is None:
            fn = self.fw.evaluator(self)
            object.__setattr__(self, "_fc_evaluator", fn)
        return fn

    # --- training ----------------------------------------------------------------------------
    def fit(self, target, scat_op, n_iter=300, batch_size=8, lr=3e-3, verbose=True, seed=0, match="sample",
            diversity=1.0, mask=None, lr_schedule="cosine", weight_decay=0.0, one_point=None, norm="self",
            spectrum=None, moments=None):
        """Train the generator so that its samples have the target's scattering statistics.

        Each step draws ``batch_size`` samples of noise, generates maps, computes their
        statistics with ``scat_op`` (gradients flow through the network) and takes one Adam step
        on a distance to the target's statistics (see :mod:`foscat_core.synthesis.generator_training`
        for the exact loss).

        Parameters
        ----------
        target : array (N_cells,) or (B, N_cells), or ScatteringStatistics
            One map, a batch of maps (their statistics are averaged), in the generator's ordering
            and cell order; or reference statistics from ``scat_op.eval`` (auto statistics of
            batch 1, or averaged with ``mean_batch()``), computed with the ``norm`` the generated
            maps will be evaluated with.
        scat_op : ScatteringCovariance
            The operator (``foscat_core.scattering.funct``) of the generator's backend.
        n_iter : int
            Optimisation steps.
        batch_size : int
            Maps generated per step (>= 2 for the diversity term).
        lr : float
            Adam's learning rate (scaled by ``lr_schedule``).
        verbose : bool
            A tqdm progress bar with the loss.
        seed : int
            Seed of the training noise.
        match : {"sample", "batch", "both"}
            ``"sample"`` (default, the microcanonical analogue): every generated map's statistics
            are compared with the target's and the distances averaged. ``"batch"``: the batch's
            mean statistics are compared (a canonical match: individual maps may deviate).
            ``"both"``: the sum of the two.
        diversity : float
            Weight of the decorrelation term, ``mean over pairs b != b' of corr(x_b, x_b')**2``,
            which penalises samples that copy each other (0: off).
        mask : array (M, N_cells) or (N_cells,), optional
            Weights of the statistics (see ``scat_op.eval``); used for the target maps and for the
            generated ones.
        lr_schedule : {None, "cosine", "step"} or callable
            ``step -> factor`` of ``lr`` (see :func:`foscat_core.nn.optimizers.resolve_schedule`).
        weight_decay : float
        one_point : float, optional
            Weight of the one-point term: the squared 1-D Wasserstein distance between each
            generated map's pixel values and the target's (sorted values), over the target's
            variance; it fixes the histogram (skewness, tails) that scattering coefficients
            constrain only weakly. ``None`` (default): 1 for map targets, 0 for statistics targets
            (which carry no pixel values; a positive weight is then a ``ValueError``) and with
            ``output="quantile"`` (whose samples have the target's values: the term is 0).
        norm : {"self", None}
            How the statistics of map targets and of generated maps are normalised
            (``scat_op.eval(..., norm=norm)``); statistics targets keep their own.
        spectrum : float, optional
            Weight of the band-power term: per generated map, ``mean (log P_b - log P_b^target)**2``
            over bands ``b``, the octaves ell 2-3, 4-7, 8-15 exactly (real spherical harmonics) and
            Haar details at each level from ``nside`` down to 16 (see
            :mod:`foscat_core.synthesis.generator_spectrum`); the scattering coefficients alone
            leave octave band powers 20-50% off. ``None`` (default): 1 for map targets, 0 for
            statistics targets (a positive weight is then a ``ValueError``).
        moments : float, optional
            Weight of the moments term: per generated map, ``(skew - skew_t)**2 / (1 + skew_t**2)
            + (kurt - kurt_t)**2 / (1 + kurt_t**2)`` against the target's skewness and excess
            kurtosis (the tails, which the one-point term weighs little). ``None`` (default): 3
            for map targets, 0 for statistics targets and with ``output="quantile"``.

        Returns
        -------
        dict
            ``"loss"`` (the total minimised, one float per step) and ``"lr"`` per step;
            ``"seconds"`` (wall time of the steps); ``"initial_distance"``/``"final_distance"``
            and ``"initial_decorrelation"``/``"final_decorrelation"``: the statistics distance
            and the decorrelation term of one fixed batch of noise, in evaluation mode, before
            and after training; ``"initial_one_point"``/``"final_one_point"``,
            ``"initial_spectrum"``/``"final_spectrum"`` and ``"initial_moments"``/``"final_moments"``
            likewise (NaN when the term is off).

        Examples
        --------
        >>> import numpy as np
        >>> from foscat_core.scattering import funct
        >>> gen = Generator(4, chanlist=[4, 8], backend="torch", seed=0)
        >>> op = funct(KERNELSZ=3, NORIENT=2, all_type="float32", backend="torch")
        >>> target = np.exp(np.random.default_rng(0).normal(size=192))
        >>> h = gen.fit(target, op, n_iter=5, batch_size=4, verbose=False)
        >>> len(h["loss"]), gen.sample(2, seed=0).shape
        (5, (2, 192))
        """
        return generator_training.fit(self, target, scat_op, n_iter=n_iter, batch_size=batch_size, lr=lr,
                                      verbose=verbose, seed=seed, match=match, diversity=diversity, mask=mask,
                                      lr_schedule=lr_schedule, weight_decay=weight_decay, one_point=one_point,
                                      norm=norm, spectrum=spectrum, moments=moments)

    # --- files -------------------------------------------------------------------------------
    def save(self, path):
        """Write config, cell ids and weights (with ``out_mean``/``out_std``) to one portable
        ``.npz`` file, atomically (see :mod:`foscat_core.nn.weights_file`)."""
        arrays = {name: self.backend.to_numpy(v) for name, v in self.named_variables()}
        write_weights(path, "Generator", self.config, self.cell_ids, arrays)

    @classmethod
    def load(cls, path, backend=None, device=None):
        """A generator from a file written by :meth:`save`, on any backend (``"numpy"`` to
        sample only). ``ValueError`` when the file holds another class or mismatched weights.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> gen = Generator(4, chanlist=[4, 8], backend="numpy", seed=3)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     gen.save(os.path.join(tmp, "gen.npz"))
        ...     same = Generator.load(os.path.join(tmp, "gen.npz"), backend="numpy")
        >>> bool(np.array_equal(same.sample(2, seed=5), gen.sample(2, seed=5)))
        True
        """
        config, cell_ids, arrays, _ = read_weights(path, cls.__dict__.get("_fc_portable", cls))
        config.setdefault("output", "linear")  # files written before the output transform existed
        gen = cls(**config, cell_ids=cell_ids, backend=backend, device=device)
        assign_weights(gen, arrays, path)
        return gen
