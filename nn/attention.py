"""Transformer parts on token sequences ``(B, T, D)``, written once for every backend.

``Linear``, ``LayerNorm``, ``MultiHeadSelfAttention``, ``MLP`` and the pre-norm
``TransformerBlock`` only use the array namespace ``xp`` (matmul, reshape, permute_dims, mean,
sqrt) and the framework adapter's ``softmax`` / ``gelu``, so one code path serves NumPy, PyTorch
and TensorFlow (also under ``tf.function``: the batch dimension is always reshaped as ``-1``).

Weights are drawn with NumPy from ``seed``: one seed gives the same layer on every backend.
"""

import math

import numpy as np

from foscat_core._validation import check_positive_int
from foscat_core.backends.dtypes import check_backend_dtype

from .layers import like_dtype
from .module import NativeModule


def check_last_axis(x, expected, name, layer):
    if len(x.shape) < 2 or int(x.shape[-1]) != expected:
        raise ValueError(f"{name} must have {expected} features on its last axis for {layer}, got shape {tuple(x.shape)}")


class Linear(NativeModule):
    """Affine map of the last axis: (..., in_features) → (..., out_features).

    ``weight`` (in_features, out_features) uniform in ``±1/sqrt(in_features)``; ``bias``
    (out_features,) zeros.
    """

    def __init__(self, in_features, out_features, *, backend, dtype="float32", bias=True, seed=None):
        super().__init__(backend=backend)
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        dtype = check_backend_dtype(dtype, self.backend)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(in_features)
        self.add_parameter("weight", rng.uniform(-bound, bound, size=(in_features, out_features)), dtype)
        self.use_bias = bool(bias)
        if self.use_bias:
            self.add_parameter("bias", np.zeros(out_features), dtype)

    def forward(self, x):
        y = self.backend.xp.matmul(x, self.weight)
        if self.use_bias:
            y = y + like_dtype(self.backend, self.bias, y)
        return y


class LayerNorm(NativeModule):
    """Normalise the last axis of (..., D) to zero mean and unit variance, then learned
    per-feature ``scale`` (ones) and ``shift`` (zeros). Biased variance, as ``torch.nn.LayerNorm``.

    Parameters
    ----------
    features : int
        D, the size of the last axis.
    backend : str or Backend
        Keyword-only.
    dtype : {"float32", "float64"}
        Of ``scale`` and ``shift`` (each of shape (D,)).
    eps : float
        Added to the variance before the square root.

    Shapes: (..., D) → (..., D), e.g. tokens (B, T, D).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import LayerNorm
    >>> norm = LayerNorm(8, backend="numpy")
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 5, 8)).astype("float32")  # (B, T, D)
    >>> y = norm(x)
    >>> y.shape, norm.n_parameters()
    ((2, 5, 8), 16)
    >>> bool(np.allclose(y.mean(axis=-1), 0, atol=1e-5)), bool(np.allclose(y.std(axis=-1), 1, atol=1e-3))
    (True, True)
    """

    def __init__(self, features, *, backend, dtype="float32", eps=1e-5):
        super().__init__(backend=backend)
        self.features = check_positive_int(features, "features")
        self.eps = float(eps)
        dtype = check_backend_dtype(dtype, self.backend)
        self.add_parameter("scale", np.ones(features), dtype)
        self.add_parameter("shift", np.zeros(features), dtype)

    def forward(self, x):
        xp = self.backend.xp
        check_last_axis(x, self.features, "x", "this LayerNorm")
        mean = xp.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        var = xp.mean(centred * centred, axis=-1, keepdims=True)
        return centred / xp.sqrt(var + self.eps) * self.scale + self.shift


class MultiHeadSelfAttention(NativeModule):
    """Scaled dot-product self-attention with ``num_heads`` heads: (B, T, D) → (B, T, D).

    One fused projection ``qkv`` (D → 3D), ``softmax(q kᵀ / sqrt(D / num_heads))`` over the key
    axis, then the output projection ``proj`` (D → D). Every token attends to every token: the
    sequences handled here have no padding tokens, so no key mask is applied.

    Parameters
    ----------
    embed_dim : int
        D, the token size; divisible by ``num_heads``.
    num_heads : int
        H; each head works on ``D / H`` features.
    backend : str or Backend
        Keyword-only.
    dtype : {"float32", "float64"}
    seeds : pair of (int or None)
        Initialisation seeds of ``qkv`` (weight (D, 3D), bias (3D,)) and ``proj`` (weight
        (D, D), bias (D,)).

    Shapes: x (B, T, D) → (B, T, D).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import MultiHeadSelfAttention
    >>> attn = MultiHeadSelfAttention(8, 2, backend="numpy", seeds=(0, 1))
    >>> attn(np.ones((2, 5, 8), "float32")).shape  # (B, T, D)
    (2, 5, 8)
    >>> [name for name, _ in attn.named_variables()]
    ['qkv.weight', 'qkv.bias', 'proj.weight', 'proj.bias']
    >>> attn.n_parameters()  # 8*24 + 24 + 8*8 + 8
    288
    """

    def __init__(self, embed_dim, num_heads, *, backend, dtype="float32", seeds=(None, None)):
        super().__init__(backend=backend)
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim must be divisible by num_heads, got embed_dim={embed_dim}, num_heads={num_heads}")
        self.head_dim = embed_dim // num_heads
        self.add_child("qkv", Linear(embed_dim, 3 * embed_dim, backend=backend, dtype=dtype, seed=seeds[0]))
        self.add_child("proj", Linear(embed_dim, embed_dim, backend=backend, dtype=dtype, seed=seeds[1]))

    def forward(self, x):
        xp = self.backend.xp
        check_last_axis(x, self.embed_dim, "x", "this attention layer")
        n_tokens, h, dh = int(x.shape[1]), self.num_heads, self.head_dim
        qkv = xp.reshape(self.qkv(x), (-1, n_tokens, 3, h, dh))
        qkv = xp.permute_dims(qkv, (2, 0, 3, 1, 4))  # (3, B, H, T, dh)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = xp.matmul(q, xp.permute_dims(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(dh))  # (B, H, T, T)
        weights = self.fw.softmax(scores, axis=-1)
        out = xp.permute_dims(xp.matmul(weights, v), (0, 2, 1, 3))  # (B, T, H, dh)
        return self.proj(xp.reshape(out, (-1, n_tokens, self.embed_dim)))


class MLP(NativeModule):
    """Linear (D → hidden) → GELU (exact, erf) → Linear (hidden → D) on (..., D)."""

    def __init__(self, features, hidden, *, backend, dtype="float32", seeds=(None, None)):
        super().__init__(backend=backend)
        self.add_child("fc1", Linear(features, hidden, backend=backend, dtype=dtype, seed=seeds[0]))
        self.add_child("fc2", Linear(hidden, features, backend=backend, dtype=dtype, seed=seeds[1]))

    def forward(self, x):
        return self.fc2(self.fw.gelu(self.fc1(x)))


class TransformerBlock(NativeModule):
    """Pre-norm transformer block on (B, T, D):

    ``x = x + attn(norm1(x))``; ``x = x + mlp(norm2(x))`` with an MLP of ``round(mlp_ratio * D)``
    hidden units.

    Parameters
    ----------
    embed_dim : int
        D, the token size; divisible by ``num_heads``.
    num_heads : int
        Attention heads (see :class:`MultiHeadSelfAttention`).
    mlp_ratio : float
        Hidden width of the MLP relative to D (at least one unit).
    backend : str or Backend
        Keyword-only.
    dtype : {"float32", "float64"}
    seeds : 4-tuple of (int or None)
        Initialisation seeds of ``attn.qkv``, ``attn.proj``, ``mlp.fc1`` and ``mlp.fc2``.

    Shapes: x (B, T, D) → (B, T, D).

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.nn import TransformerBlock
    >>> block = TransformerBlock(8, 2, mlp_ratio=2.0, backend="numpy", seeds=(0, 1, 2, 3))
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")  # (B, T, D)
    >>> block(x).shape
    (2, 5, 8)
    >>> [name for name, _ in block.named_variables()][:3]
    ['norm1.scale', 'norm1.shift', 'attn.qkv.weight']
    """

    def __init__(self, embed_dim, num_heads, mlp_ratio=4.0, *, backend, dtype="float32", seeds=(None,) * 4):
        super().__init__(backend=backend)
        hidden = max(1, int(round(float(mlp_ratio) * embed_dim)))
        self.add_child("norm1", LayerNorm(embed_dim, backend=backend, dtype=dtype))
        self.add_child("attn", MultiHeadSelfAttention(embed_dim, num_heads, backend=backend, dtype=dtype,
                                                      seeds=seeds[:2]))
        self.add_child("norm2", LayerNorm(embed_dim, backend=backend, dtype=dtype))
        self.add_child("mlp", MLP(embed_dim, hidden, backend=backend, dtype=dtype, seeds=seeds[2:4]))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
