"""``HealpixViT``: a vision transformer whose tokens are the cells of a coarser HEALPix level."""

import math
import numbers

import healpy as hp
import numpy as np

from foscat_core._arrays import as_backend_array
from foscat_core._validation import check_nside, check_positive_int
from foscat_core.domain import Domain
from foscat_core.ordering import as_domain

from .attention import LayerNorm, Linear, TransformerBlock
from .layers import PointwiseConv
from .network import Network


class TokenLayout:
    """Host tables that group the cells of a domain into tokens at a coarser NESTED level.

    A token at ``token_nside`` owns its ``S = (nside // token_nside) ** 2`` NESTED children at
    ``nside``: ids ``token * S ... token * S + S - 1``, slot ``s`` = id ``token * S + s``.
    Tokens are ``np.unique(cell_ids // S)`` (ascending); on a regional domain a token at the
    border may miss some children: their slots are padding (``present`` False).

    Attributes
    ----------
    token_ids : ndarray of int64, shape (T,)
    children : int
        ``S``, cells per token.
    gather : ndarray of int64, shape (T * S,)
        Position in the input order of slot ``(t, s)`` (row-major), 0 for padding.
    present : ndarray of bool, shape (T, S)
    scatter : ndarray of int64, shape (N,)
        Slot ``t * S + s`` of every input cell, in input order (the inverse of ``gather``).
    identity : bool
        True when ``gather`` and ``scatter`` are the identity (full sky, or a domain of whole
        tokens given in ascending order): no gather is needed then.
    centres : ndarray of float64, shape (T, 3)
        Unit vectors of the token centres (``healpy.pix2vec(token_nside, token_ids, nest=True)``).
    """

    def __init__(self, domain, token_nside):
        self.nside, self.token_nside = domain.nside, token_nside
        self.children = (domain.nside // token_nside) ** 2
        s, ids = self.children, domain.cell_ids
        self.token_ids = np.unique(ids // s)
        slots = self.token_ids[:, None] * s + np.arange(s, dtype=np.int64)
        positions, self.present = domain.locate(slots)
        self.gather = positions.reshape(-1)
        self.scatter = np.searchsorted(self.token_ids, ids // s) * s + ids % s
        self.all_present = bool(self.present.all())
        self.identity = self.all_present and bool(np.array_equal(self.gather, np.arange(ids.size)))
        self.centres = np.stack(hp.pix2vec(token_nside, self.token_ids, nest=True), axis=-1).astype(np.float64)

    @property
    def n_tokens(self):
        return int(self.token_ids.size)


def fourier_features(centres, token_nside):
    """Fixed position features of unit vectors (T, 3) → (T, 3 + 6 L), float64.

    ``[x, y, z, sin(2^j π x), ..., cos(2^j π z)]`` for ``j < L = log2(token_nside) + 2``: the
    finest wavelength, ``2 / 2^(L-1)``, is about the token spacing (~``1 / token_nside`` rad).
    Being a function of position only, it suits any regional domain.
    """
    n_freq = int(math.log2(token_nside)) + 2
    angles = centres[:, None, :] * (np.pi * 2.0 ** np.arange(n_freq))[:, None]  # (T, L, 3)
    t = centres.shape[0]
    return np.concatenate([centres, np.sin(angles).reshape(t, -1), np.cos(angles).reshape(t, -1)], axis=1)


# Default token budget: attention is O(T^2), and 3072 tokens (the full sky at nside 16) still
# trains on a CPU.
MAX_DEFAULT_TOKENS = 3072


def resolve_token_nside(token_nside, in_nside, cell_ids=None):
    """``token_nside``, or by default ``in_nside // 4`` (16 cells per token), coarsened until the
    domain has at most :data:`MAX_DEFAULT_TOKENS` tokens.

    ``cell_ids``: NESTED ids at ``in_nside`` (``None`` = full sky) or their :class:`Domain`.
    """
    if token_nside is None:
        domain = cell_ids if isinstance(cell_ids, Domain) else as_domain(in_nside, cell_ids)
        token_nside = max(1, in_nside // 4)
        while token_nside > 1 and _n_tokens(domain, token_nside) > MAX_DEFAULT_TOKENS:
            token_nside //= 2
        return token_nside
    token_nside = check_nside(token_nside, "token_nside")
    if token_nside > in_nside:
        raise ValueError(f"token_nside must be <= in_nside={in_nside}, got {token_nside}")
    return token_nside


def _n_tokens(domain, token_nside):
    if domain.is_full_sky:
        return 12 * token_nside**2
    return int(np.unique(domain.cell_ids // (domain.nside // token_nside) ** 2).size)


def _apply(block, h):
    """``block(h)``, the module as an argument (what a checkpointed block runs)."""
    return block(h)


class HealpixViT(Network):
    """Vision transformer on HEALPix maps: tokens are the cells of a coarser NESTED level.

    Each token gathers its ``S = (in_nside // token_nside) ** 2`` children (a NESTED patch),
    a linear patch embedding maps the ``S * n_chan_in`` values to ``embed_dim``; a learned linear
    map of fixed Fourier features of the token centre (x, y, z) is added as position encoding
    (valid on any regional domain, no table indexed by token number); ``depth`` pre-norm
    transformer blocks (LayerNorm → multi-head self-attention → residual, LayerNorm → GELU MLP →
    residual) and a final LayerNorm follow; a linear head maps every token back to its
    ``S * out_channels`` cell values, which are scattered to the input cells in input order, and
    a 1x1 convolution of the input (skip) is added so that fine detail survives.

    On a regional domain a token at the border may miss children: its missing slots are padded
    with 0 and masked, so they contribute nothing to the embedding and get no output.

    Parameters
    ----------
    in_nside : int
        nside of the input maps (NESTED), a power of two.
    n_chan_in : int
        Input channels.
    out_channels : int
    cell_ids : array_like of int, shape (N_cells,), optional
        Ids (in the ``nest`` ordering) of a regional domain at ``in_nside``, any order (kept by
        the output); ``None`` = full sky. Tokens are NESTED patches whatever the ordering.
    token_nside : int, optional
        Level of the tokens, a power of two ``<= in_nside``; default ``max(1, in_nside // 4)``
        (16 cells per token), coarsened while the domain would have more than 3072 tokens.
        Attention costs O(T²) in the number of tokens T.
    embed_dim : int
        Token width D, divisible by ``num_heads``.
    depth : int
        Transformer blocks.
    num_heads : int
    mlp_ratio : float
        MLP hidden width = ``round(mlp_ratio * embed_dim)``.
    task : {"regression", "segmentation"}
    final_activation : {None, "none", "sigmoid", "softmax"}
        ``None``: none for regression, sigmoid for one-channel segmentation, softmax otherwise.
    device : str, optional
    dtype : {"float32", "float64"}
    backend : str or Backend, optional
    seed : int
        Weight initialisation seed (the same network on every backend).
    nest, mask_missing : bool
        As :class:`~foscat_core.nn.HealpixUNet`; with ``mask_missing`` the patch embedding and
        the skip take ``2 * n_chan_in`` channels (values and validity).
    checkpointing : bool
        As :class:`~foscat_core.nn.HealpixUNet`, each transformer block being a block.

    Shapes: ``forward(x)`` with x (B, n_chan_in, N_cells) → (B, out_channels, N_cells);
    inside, tokens are (B, T, embed_dim).

    Attributes
    ----------
    token_nside, n_tokens : int
    token_ids : ndarray of int64, shape (T,)
        NESTED ids of the tokens at ``token_nside``, ascending.
    children_per_token : int
        ``S``.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn.vit import HealpixViT
    >>> net = HealpixViT(4, 2, 3, token_nside=1, embed_dim=8, num_heads=2, backend="numpy")
    >>> net.n_tokens, net.children_per_token
    (12, 16)
    >>> net(np.zeros((5, 2, 192), "float32")).shape
    (5, 3, 192)
    """

    def __init__(self, in_nside, n_chan_in, out_channels=1, cell_ids=None, token_nside=None, embed_dim=64, depth=2,
                 num_heads=4, mlp_ratio=4.0, task="regression", final_activation=None, device=None, dtype="float32",
                 backend=None, seed=0, nest=True, mask_missing=False, checkpointing=False):
        super().__init__(backend=backend, device=device)
        in_nside = check_nside(in_nside, "in_nside")
        # Built (and its ids checked) once, before the token level that depends on it.
        domain = as_domain(in_nside, None if cell_ids is None else np.asarray(cell_ids), nest)
        token_nside = resolve_token_nside(token_nside, in_nside, domain)
        embed_dim = check_positive_int(embed_dim, "embed_dim")
        num_heads = check_positive_int(num_heads, "num_heads")
        depth = check_positive_int(depth, "depth")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim must be divisible by num_heads, got embed_dim={embed_dim}, num_heads={num_heads}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, numbers.Real) or not mlp_ratio * embed_dim >= 0.5:
            raise ValueError(f"mlp_ratio must be a positive number (at least one hidden unit), got {mlp_ratio!r}")
        config = dict(in_nside=in_nside, n_chan_in=n_chan_in, out_channels=out_channels, token_nside=token_nside,
                      embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=float(mlp_ratio), task=task,
                      final_activation=final_activation, dtype=dtype, seed=seed)
        self._init_network(config, in_nside, n_chan_in, cell_ids, out_channels, task, final_activation, dtype,
                           nest, mask_missing, domain=domain)
        self._init_checkpointing(checkpointing)
        self.token_nside, self.embed_dim, self.depth, self.num_heads = token_nside, embed_dim, depth, num_heads
        layout = TokenLayout(self.domain, token_nside)
        object.__setattr__(self, "layout", layout)  # host tables: nothing for the framework to track
        self.token_ids, self.n_tokens, self.children_per_token = layout.token_ids, layout.n_tokens, layout.children
        features = fourier_features(layout.centres, token_nside)
        object.__setattr__(self, "_position_features", features)

        bk, dt, s, c_in = self.backend, self.dtype, layout.children, self.first_layer_channels
        seeds = iter(np.random.SeedSequence(seed).generate_state(4 * depth + 4))
        self.add_child("embed", Linear(s * c_in, embed_dim, backend=bk, dtype=dt, seed=next(seeds)))
        self.add_child("pos_embed", Linear(features.shape[1], embed_dim, backend=bk, dtype=dt, seed=next(seeds)))
        self.add_child("blocks", [TransformerBlock(embed_dim, num_heads, mlp_ratio, backend=bk, dtype=dt,
                                                   seeds=tuple(next(seeds) for _ in range(4))) for _ in range(depth)])
        self.add_child("norm", LayerNorm(embed_dim, backend=bk, dtype=dt))
        self.add_child("head", Linear(embed_dim, s * self.out_channels, backend=bk, dtype=dt, seed=next(seeds)))
        self.add_child("skip", PointwiseConv(c_in, self.out_channels, backend=bk, dtype=dt, seed=next(seeds)))

    # --- pieces -----------------------------------------------------------------------------
    def patch_embedding(self, x):
        """Linear embedding of each token's cells: x (B, C, N_cells) → (B, T, embed_dim), C the
        channels the first layer sees (``n_chan_in``, doubled with ``mask_missing``).

        The input of token t is its (C, S) block flattened channel-major; padded slots
        (children outside a regional domain) are 0, so they contribute nothing.
        """
        bk, xp, lay = self.backend, self.backend.xp, self.layout
        x = as_backend_array(bk, x, "x", self.dtype)
        c, t, s = self.first_layer_channels, lay.n_tokens, lay.children
        patches = x if lay.identity else bk.take(x, bk.index_array(lay.gather), axis=-1)
        patches = xp.reshape(patches, (-1, c, t, s))
        if not lay.all_present:
            patches = patches * bk.asarray(lay.present.reshape(1, 1, t, s), dtype=self.dtype)
        patches = xp.reshape(xp.permute_dims(patches, (0, 2, 1, 3)), (-1, t, c * s))
        return self.embed(patches)

    def position_encoding(self):
        """The learned position encoding of the tokens, (T, embed_dim)."""
        return self.pos_embed(self.backend.asarray(self._position_features, dtype=self.dtype))

    def _forward(self, x):
        bk, xp, lay = self.backend, self.backend.xp, self.layout
        h = self.patch_embedding(x) + self.position_encoding()
        for block in self.blocks:
            h = self._block(_apply, block, h)
        y = self.head(self.norm(h))  # (B, T, C_out * S)
        c, t, s = self.out_channels, lay.n_tokens, lay.children
        y = xp.permute_dims(xp.reshape(y, (-1, t, c, s)), (0, 2, 1, 3))
        y = xp.reshape(y, (-1, c, t * s))
        if not lay.identity:
            y = bk.take(y, bk.index_array(lay.scatter), axis=-1)
        return y + self.skip(x)
