"""A depthwise form of the stencil convolution (for wavelet banks): interpolate once, then filter.

``SphericalStencil.conv`` multiplies the input channels by the kernels first and then applies the
sparse stencil operator to ``P * C_out`` columns per map, which suits networks (many input
channels). The scattering operator filters many single-channel maps with the same small bank of
``C`` kernels, so here every map is first interpolated at the ``P`` stencil points (one sparse
product ``(P * N, N) @ (N, maps)`` with at most 4 non-zeros per row, the backend's
``sparse_matmul``) and the bank is then applied as one dense product
``(C, P) @ (P, N * maps)``. Same numbers as ``conv`` (up to rounding), several times less memory
traffic; the gradient of the sparse product is the backend's own.
"""

from ..backends.sparse_forms import SparseForms


class DepthwiseFilter:
    """Interpolation of a map at the K x K stencil points of every cell (gauge 0 of ``stencil``),
    then a dense product with a bank of kernels; used through :meth:`SphericalStencil.filter`.

    Rows of the interpolation operator are tap-major: row ``p * N + n`` is stencil point ``p`` of
    cell ``n``.
    """

    def __init__(self, stencil):
        self.backend, self.dtype = stencil.backend, stencil.dtype
        self.n_cells, self.n_points = stencil.n_cells, stencil.n_points
        forms = SparseForms.from_taps(stencil.index[0], stencil.weight[0], self.dtype, tap_major=True)
        self.op = self.backend.sparse_operator(forms, self.dtype)

    def filter(self, maps, bank):
        """Filter every map with every kernel of ``bank``.

        Parameters
        ----------
        maps : native array, shape (L, N)
        bank : native array, shape (C, P)
            Kernel ``c`` over the stencil taps (``p = i*K + j``, as in ``SphericalStencil.conv``).

        Returns
        -------
        native array, shape (L, C, N)
            ``out[l, c] == stencil.conv(maps[:, None], bank[None])[l, c]`` up to rounding.
        """
        xp = self.backend.xp
        n_maps, n, p = int(maps.shape[0]), self.n_cells, self.n_points
        if n_maps == 0:  # (0, 1, N) * (1, C, 1): the empty result, on maps' device and dtype
            return xp.expand_dims(maps, axis=1) * xp.reshape(bank[:, :1], (1, int(bank.shape[0]), 1))
        interp = self.backend.sparse_matmul(self.op, xp.permute_dims(maps, (1, 0)))  # (P * N, L)
        out = xp.matmul(bank, xp.reshape(interp, (p, n * n_maps)))  # (C, N * L)
        return xp.permute_dims(xp.reshape(out, (int(bank.shape[0]), n, n_maps)), (2, 0, 1))
