"""``HealpixUNet``: encoder-decoder on the NESTED pyramid of a full-sky or regional domain."""

import numpy as np

from foscat_core._validation import check_kernel_size

from ._common import check_chanlist, gauge_mean, pyramid
from .layers import Down, Norm, PointwiseConv, SphericalConv, Up, make_stencil
from .module import NativeModule
from .network import Network


class DoubleConv(NativeModule):
    """(conv → norm → ReLU) twice on one level; (B, C_in, N) → (B, G*C_out, N).

    A decoder block is called as ``block(h, skip, up)``: its first conv reads
    ``concat([up(h), skip], axis=1)``. After :meth:`checkpoint_inside` (a network built with
    ``checkpointing=True``) each conv → norm → ReLU stage keeps only its input and recomputes the
    rest in the backward pass, and the decoder's first conv takes ``up(h)`` and the skip apart
    (``SphericalConv.forward_parts``), so the concatenation, the level's largest tensor, and its
    gradient are never made.
    """

    def __init__(self, in_channels, out_channels, stencil, norm, seeds):
        super().__init__(backend=stencil.backend)
        g = stencil.n_gauges
        self.add_child("conv1", SphericalConv(in_channels, out_channels, stencil, seed=seeds[0]))
        self.add_child("norm1", Norm(g * out_channels, norm, backend=stencil.backend, dtype=stencil.dtype))
        self.add_child("conv2", SphericalConv(g * out_channels, out_channels, stencil, seed=seeds[1]))
        self.add_child("norm2", Norm(g * out_channels, norm, backend=stencil.backend, dtype=stencil.dtype))
        self.checkpoint_stages = False

    def checkpoint_inside(self, skip_channels=None):
        """Checkpoint each stage; ``skip_channels``: a decoder block's skip width (its first conv
        then reads the upsampled maps and the skip apart)."""
        self.checkpoint_stages = True
        if skip_channels is not None:
            self.conv1.prepare_parts([self.conv1.in_channels - skip_channels, skip_channels])

    def forward(self, x, skip=None, up=None):
        if not (self.checkpoint_stages and self.fw.recomputes([self])):  # the plain forward
            if up is not None:
                x = self.backend.xp.concat([up(x), skip], axis=1)
            x = _stage(self.conv1, self.norm1, x)
            return _stage(self.conv2, self.norm2, x)
        checkpoint = self.fw.checkpoint
        if up is None:
            x = checkpoint(_stage, self.conv1, self.norm1, x)
        else:
            x = checkpoint(_up_stage, up, self.conv1, self.norm1, x, skip)
        return checkpoint(_stage, self.conv2, self.norm2, x)


def _stage(conv, norm, x):
    """conv → norm → ReLU (the modules are arguments, not captured: checkpointing needs them)."""
    return conv.fw.relu(norm(conv(x)))


def _up_stage(up, conv, norm, h, skip):
    """The decoder's first stage on the coarse ``h`` and the skip, without their concatenation."""
    return conv.fw.relu(norm(conv.forward_parts([up(h), skip])))


def _apply(module, x):
    """``module(x)``: what a checkpointed block runs (the module is an argument, not captured)."""
    return module(x)


def _up_block(up, dec, h, skip):
    """A decoder block on ``h`` and the skip; checkpointed as a whole, the upsampling and the
    concatenation are recomputed rather than kept."""
    return dec(h, skip, up)


class HealpixUNet(Network):
    """U-Net on HEALPix maps: oriented spherical convolutions, NESTED down/up, skip connections.

    Per level a DoubleConv (conv → norm → ReLU, twice); ``len(chanlist) - 1`` downs; ups with the
    encoder's features concatenated (upsampled first, skip second); a 1x1 output conv.

    Parameters
    ----------
    in_nside : int
        nside of the input maps.
    n_chan_in : int
        Input channels.
    chanlist : list of int
        Channels per level, e.g. ``[16, 32, 64]`` (the last is the bottleneck).
    cell_ids : array_like of int, shape (N_cells,), optional
        Ids (in the ``nest`` ordering) of a regional domain at ``in_nside``, any order; ``None`` =
        full sky. Every level works on the NESTED parent cells present; outputs follow
        ``cell_ids``' order.
    KERNELSZ : int
        Stencil side K (odd).
    gauge_type : {"phi", "cosmo"}
    G : int
        Gauges: every conv outputs G x its channel count (one copy per rotated frame); the head
        averages over the gauges before the 1x1 conv.
    task : {"regression", "segmentation"}
    out_channels : int
    final_activation : {None, "none", "sigmoid", "softmax"}
        ``None``: none for regression, sigmoid for one-channel segmentation, softmax otherwise.
    device : str, optional
        Framework device; default CUDA / the TF GPU when present, else CPU.
    down_type : {"max", "mean"}
    dtype : {"float32", "float64"}
    backend : str or Backend, optional
    norm : {"batch", "group", "instance", "none"}
    seed : int
        Weight initialisation seed (the same network on every backend).
    nest : bool
        ``False``: ``cell_ids`` and the cell axis are in RING order (see :class:`Network`).
    mask_missing : bool
        NaN inputs are missing cells, given to the network as validity channels (see :class:`Network`).
    checkpointing : bool
        Activation checkpointing: in training (with gradients) each encoder block, and each
        decoder block but the last (whose backward runs first) with its upsampling, keeps only its
        inputs and recomputes its activations in the backward pass, one conv → norm → ReLU stage
        at a time (nested checkpoints; the decoder's first conv reads the upsampled maps and the
        skip apart, never concatenated): a full-sky torch step's peak memory drops by ~2.1x for
        ~1.6-1.8x its time (benchmarks/README.md); results are unchanged up to float rounding.
        Saved with the network (in its config when ``True``).

    Shapes: ``forward(x)`` with x (B, n_chan_in, N_cells) → (B, out_channels, N_cells).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import HealpixUNet
    >>> net = HealpixUNet(4, 2, [4, 8], backend="numpy")
    >>> net(np.zeros((1, 2, 192), "float32")).shape
    (1, 1, 192)
    """

    def __init__(self, in_nside, n_chan_in, chanlist, cell_ids=None, KERNELSZ=3, gauge_type="phi", G=1,
                 task="regression", out_channels=1, final_activation=None, device=None, down_type="max",
                 dtype="float32", backend=None, norm="batch", seed=0, nest=True, mask_missing=False,
                 checkpointing=False):
        super().__init__(backend=backend, device=device)
        chanlist = check_chanlist(chanlist)
        config = dict(in_nside=in_nside, n_chan_in=n_chan_in, chanlist=chanlist, KERNELSZ=KERNELSZ,
                      gauge_type=gauge_type, G=G, task=task, out_channels=out_channels,
                      final_activation=final_activation, down_type=down_type, dtype=dtype, norm=norm, seed=seed)
        self._init_network(config, in_nside, n_chan_in, cell_ids, out_channels, task, final_activation, dtype,
                           nest, mask_missing)
        self._init_checkpointing(checkpointing)
        check_kernel_size(KERNELSZ)
        self.chanlist, self.n_gauges = chanlist, G
        # One Domain per level, shared by the level's stencil, its down plan and the up plan into it.
        levels = pyramid(self.domain, len(chanlist), f"chanlist has {len(chanlist)} levels, which")
        stencils = [make_stencil(dom, None, KERNELSZ, gauge_type, G, self.backend, self.dtype) for dom in levels]
        self.n_gauges = stencils[0].n_gauges
        g, n_down = self.n_gauges, len(chanlist) - 1
        seeds = iter(np.random.SeedSequence(seed).generate_state(4 * len(chanlist) + 2))
        enc, c_prev = [], self.first_layer_channels
        for stencil, c in zip(stencils, chanlist):
            enc.append(DoubleConv(c_prev, c, stencil, norm, (next(seeds), next(seeds))))
            c_prev = g * c
        self.add_child("enc", enc)
        self.add_child("downs", [Down(dom, None, down_type, backend=self.backend) for dom in levels[:-1]])
        ups, dec = [], []
        for i in range(n_down):
            coarse, fine = levels[n_down - i], levels[n_down - i - 1]
            ups.append(Up(coarse, None, fine, backend=self.backend))
            c_out = chanlist[n_down - i - 1]
            dec.append(DoubleConv(c_prev + g * c_out, c_out, stencils[n_down - i - 1], norm, (next(seeds), next(seeds))))
            c_prev = g * c_out
        self.add_child("ups", ups)
        self.add_child("dec", dec)
        if self.checkpointing:  # checkpoints inside the blocks too: one stage's activations at a time
            for block in enc:
                block.checkpoint_inside()
            for i, block in enumerate(dec):
                block.checkpoint_inside(skip_channels=g * chanlist[n_down - i - 1])
        self.add_child("head", PointwiseConv(chanlist[0], self.out_channels, backend=self.backend, dtype=self.dtype,
                                             seed=next(seeds)))

    def _forward(self, x):
        skips, h = [], x
        for enc, down in zip(self.enc, self.downs):
            h = self._block(_apply, enc, h)
            skips.append(h)
            h = down(h)
        h = self._block(_apply, self.enc[len(self.chanlist) - 1], h)
        last = len(self.dec) - 1
        for i, (up, dec, skip) in enumerate(zip(self.ups, self.dec, reversed(skips))):
            # The last block's backward runs first: a block-level checkpoint would recompute it at
            # once and save nothing; its stages still checkpoint themselves.
            h = _up_block(up, dec, h, skip) if i == last else self._block(_up_block, up, dec, h, skip)
        return self.head(gauge_mean(self.backend.xp, h, self.n_gauges))

