"""Layers and networks on HEALPix maps, defined once and native in each framework.

With ``backend="torch"`` a network is a ``torch.nn.Module``; with ``"tensorflow"`` a ``tf.Module``
whose weights are ``tf.Variable``s; with ``"numpy"`` a plain object for inference. Maps are
``(B, C, N_cells)`` everywhere.
"""

from .attention import LayerNorm, MultiHeadSelfAttention, TransformerBlock
from .cnn import CNN
from .gcnn import GCNN, WaveletConv, WaveletTransform
from .layers import Down, Norm, PointwiseConv, SphericalConv, Up
from .module import NativeModule
from .network import Network
from .unet import HealpixUNet
from .vit import HealpixViT

__all__ = ["HealpixUNet", "CNN", "HealpixViT", "GCNN", "WaveletConv", "WaveletTransform", "LayerNorm", "MultiHeadSelfAttention", "TransformerBlock", "Network", "NativeModule", "SphericalConv", "PointwiseConv", "Norm", "Down", "Up"]
