"""The wavelet bank of the scattering operator: oriented Morlet kernels and a Gaussian smoother.

Kernels live on the K x K oriented stencil of :class:`foscat_core.SphericalStencil`: tap
``p = i*K + j`` sits at the tangent-plane offset ``(u, v) = (j - K//2, K//2 - i)`` in pixel units
(``u`` east, ``v`` north in the ``"phi"`` gauge). The same kernels are applied at every scale: a
map of scale ``j`` lives at ``nside / 2**j``, so a tap spacing of one pixel there is ``2**j``
pixels of the input map, which dilates the wavelet.

Definitions (all in pixel units of the scale the kernel is applied at)::

    sigma   = LAMBDA * (K // 2) / 2             # Gaussian envelope width (1.2 px for K=5)
    xi      = XI                                # carrier frequency, radians per pixel (see below)
    theta_k = k * pi / NORIENT                  # k = 0 .. NORIENT-1, from east towards north
    g(u, v) = exp(-(u**2 + v**2) / (2 * sigma**2))
    psi_k   = g * (exp(1j * xi * (u cos theta_k + v sin theta_k)) - beta_k)
    beta_k  = sum(g * exp(1j * xi * (...))) / sum(g)   # makes sum(psi_k) == 0 on the grid
    psi_k  /= sqrt(sum |psi_k|**2)                     # unit energy for every orientation
    phi     = g / sum(g)                               # smoothing kernel (unit sum)

The smoothing kernel uses the same envelope; smoothing followed by a mean ``down`` takes a map
from one scale to the next.

The carrier ``xi`` sets where each scale sits in multipoles: a wave of ``xi`` radians per pixel
at nside ``n`` is ``l ~ xi * n / 1.02`` (a pixel is ``sqrt(4 pi / (12 n**2)) = 1.02 / n`` radians).
With :data:`CARRIER_FREQUENCY` (``3 pi / 4``, the library we are modelled on) scale 0 responds
from ``l ~ 1.3 nside`` up to the pixel scale (peak at ``l ~ 1.9 nside``, and HEALPix modes beyond
``l = 3 nside`` seen almost as strongly) and scale 1, whose upper half the smoother before the
``down`` cuts, peaks at ``l ~ 0.9 nside``: the octave ``l = nside .. 2 nside`` falls between two
scales, so its power is not fixed by the statistics (a synthesis keeps whatever its starting map
had there; issue 13). :data:`OCTAVE_CARRIER_FREQUENCY` (``0.6 pi``, the scattering operator's
default) centres scale 0 on that octave (half-maximum response ``l ~ 1.0 .. 2.1 nside``).
"""

import math
import numbers

import numpy as np

from foscat_core._validation import check_kernel_size, check_positive_int
from foscat_core.stencils.geometry import tap_offsets

CARRIER_FREQUENCY = 0.75 * math.pi
OCTAVE_CARRIER_FREQUENCY = 0.6 * math.pi


def check_xi(xi, name="XI"):
    """``xi`` as a float after checking it is a real number in ``(0, pi]`` radians per pixel."""
    if isinstance(xi, (bool, np.bool_)) or not isinstance(xi, numbers.Real):
        raise TypeError(f"{name} must be a carrier frequency in (0, pi] radians per pixel, got {type(xi).__name__} "
                        f"{xi!r}")
    xi = float(xi)
    if not (math.isfinite(xi) and 0 < xi <= math.pi):
        raise ValueError(f"{name} must be a carrier frequency in (0, pi] radians per pixel, got {xi!r}")
    return xi


def check_lambda(lam, name="LAMBDA"):
    """``lam`` as a float after checking it is a positive finite real number (not a bool or a string)."""
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, numbers.Real):
        raise TypeError(f"{name} must be a positive finite number, got {type(lam).__name__} {lam!r}")
    lam = float(lam)
    if not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {lam!r}")
    return lam


def envelope_width(kernel_sz, lam):
    """Gaussian width ``sigma = LAMBDA * (K // 2) / 2`` in pixels."""
    return check_lambda(lam) * (check_kernel_size(kernel_sz) // 2) / 2.0


def morlet_bank(kernel_sz, n_orient, lam=1.2, xi=CARRIER_FREQUENCY):
    """Complex Morlet wavelets at ``n_orient`` orientations and the real smoothing kernel.

    Parameters
    ----------
    kernel_sz : int
        Odd stencil side K.
    n_orient : int
        Number of orientations; ``theta_k = k * pi / n_orient``.
    lam : float
        Envelope width factor LAMBDA (``sigma = lam * (K // 2) / 2`` pixels).
    xi : float
        Carrier frequency in radians per pixel, in ``(0, pi]``.

    Returns
    -------
    psi : ndarray of complex128, shape (n_orient, K*K)
        Zero-mean, unit-energy wavelets, tap layout of :func:`tap_offsets`.
    phi : ndarray of float64, shape (K*K,)
        Gaussian smoothing kernel with unit sum.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.scattering import morlet_bank
    >>> psi, phi = morlet_bank(3, 4)
    >>> psi.shape, psi.dtype, phi.shape
    ((4, 9), dtype('complex128'), (9,))
    >>> bool(np.allclose(psi.sum(axis=1), 0)), bool(np.allclose((np.abs(psi) ** 2).sum(axis=1), 1))
    (True, True)
    >>> round(float(phi.sum()), 12)
    1.0
    """
    n_orient = check_positive_int(n_orient, "NORIENT")
    u, v = tap_offsets(kernel_sz)
    sigma = envelope_width(kernel_sz, lam)
    g = np.exp(-(u**2 + v**2) / (2.0 * sigma**2))
    theta = np.arange(n_orient) * math.pi / n_orient
    phase = check_xi(xi) * (np.cos(theta)[:, None] * u[None, :] + np.sin(theta)[:, None] * v[None, :])
    wave = np.exp(1j * phase)
    beta = (g[None, :] * wave).sum(axis=1, keepdims=True) / g.sum()
    psi = g[None, :] * (wave - beta)
    psi /= np.sqrt((np.abs(psi) ** 2).sum(axis=1, keepdims=True))
    phi = g / g.sum()
    return psi, phi


def conv_kernel(kernel_sz, n_orient, lam=1.2, xi=CARRIER_FREQUENCY):
    """The bank as one real ``conv`` weight: real parts, imaginary parts, then the smoother.

    Parameters
    ----------
    kernel_sz : int
        Odd stencil side K.
    n_orient : int
        Number of orientations.
    lam : float
        Envelope width factor LAMBDA, as in :func:`morlet_bank`.
    xi : float
        Carrier frequency in radians per pixel, as in :func:`morlet_bank`.

    Returns
    -------
    ndarray of float64, shape (1, 2*n_orient + 1, K*K)
        Output channel ``k`` = Re psi_k, ``n_orient + k`` = Im psi_k, ``2*n_orient`` = phi.
        Weight layout (C_in, C_out, K*K) of :meth:`foscat_core.SphericalStencil.conv`.

    Examples
    --------
    >>> import numpy as np
    >>> import foscat_core as fc
    >>> from foscat_core.scattering import conv_kernel
    >>> w = conv_kernel(3, 2)
    >>> w.shape  # (1, 2*n_orient + 1, K*K)
    (1, 5, 9)
    >>> st = fc.SphericalStencil(nside=2, kernel_sz=3, backend="numpy", dtype="float64")
    >>> y = st.conv(np.ones((1, 1, 48)), w)  # (B, 1, N) -> (B, 2*n_orient + 1, N)
    >>> y.shape
    (1, 5, 48)
    >>> bool(np.allclose(y[0, 4], 1.0))  # the smoother keeps a constant map
    True
    """
    psi, phi = morlet_bank(kernel_sz, n_orient, lam, xi)
    return np.concatenate([psi.real, psi.imag, phi[None, :]], axis=0)[None, :, :]
