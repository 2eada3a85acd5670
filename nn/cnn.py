"""``CNN``: the flat per-pixel baseline — spherical convolutions at full resolution, no pooling."""

import numpy as np

from foscat_core._validation import check_kernel_size

from ._common import check_chanlist, gauge_mean
from .layers import Norm, PointwiseConv, SphericalConv, make_stencil
from .network import Network


def _layer(conv, norm, h):
    """One (conv → norm → ReLU) layer, the modules as arguments (what a checkpointed block runs)."""
    return conv.fw.relu(norm(conv(h)))


class CNN(Network):
    """A stack of (spherical conv → norm → ReLU) at the input resolution and a 1x1 head.

    Parameters
    ----------
    in_nside, n_chan_in : int
    chanlist : list of int
        Channels of each conv layer (its length is the depth).
    out_channels : int
    cell_ids : array_like of int, shape (N_cells,), optional
        Regional domain in the ``nest`` ordering (any order, kept); ``None`` = full sky.
    KERNELSZ, gauge_type, G, task, final_activation, norm, device, dtype, backend, seed, nest, mask_missing
        As :class:`~foscat_core.nn.HealpixUNet`.
    checkpointing : bool
        As :class:`~foscat_core.nn.HealpixUNet`, each (conv → norm → ReLU) layer being a block.

    Shapes: x (B, n_chan_in, N_cells) → (B, out_channels, N_cells).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import CNN
    >>> CNN(2, 3, [8, 8], out_channels=2, backend="numpy")(np.zeros((4, 3, 48), "float32")).shape
    (4, 2, 48)
    """

    def __init__(self, in_nside, n_chan_in, chanlist, out_channels=1, cell_ids=None, KERNELSZ=3, task="regression",
                 gauge_type="phi", G=1, final_activation=None, norm="batch", device=None, dtype="float32",
                 backend=None, seed=0, nest=True, mask_missing=False, checkpointing=False):
        super().__init__(backend=backend, device=device)
        chanlist = check_chanlist(chanlist)
        config = dict(in_nside=in_nside, n_chan_in=n_chan_in, chanlist=chanlist, out_channels=out_channels,
                      KERNELSZ=KERNELSZ, task=task, gauge_type=gauge_type, G=G, final_activation=final_activation,
                      norm=norm, dtype=dtype, seed=seed)
        self._init_network(config, in_nside, n_chan_in, cell_ids, out_channels, task, final_activation, dtype,
                           nest, mask_missing)
        self._init_checkpointing(checkpointing)
        check_kernel_size(KERNELSZ)
        stencil = make_stencil(self.domain, None, KERNELSZ, gauge_type, G, self.backend, self.dtype)
        self.n_gauges = g = stencil.n_gauges
        seeds = iter(np.random.SeedSequence(seed).generate_state(len(chanlist) + 1))
        convs, norms, c_prev = [], [], self.first_layer_channels
        for c in chanlist:
            convs.append(SphericalConv(c_prev, c, stencil, seed=next(seeds)))
            norms.append(Norm(g * c, norm, backend=self.backend, dtype=self.dtype))
            c_prev = g * c
        self.add_child("convs", convs)
        self.add_child("norms", norms)
        self.add_child("head", PointwiseConv(chanlist[-1], self.out_channels, backend=self.backend, dtype=self.dtype,
                                             seed=next(seeds)))

    def _forward(self, x):
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = self._block(_layer, conv, norm, h)
        return self.head(gauge_mean(self.backend.xp, h, self.n_gauges))
