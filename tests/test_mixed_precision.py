"""Mixed precision on torch: ``torch.autocast`` and networks built in bfloat16 (CPU, nside 4-8).

Tolerances: bfloat16 keeps 8 significant bits (unit roundoff 2**-9 = 2e-3). The inputs, the
weights, the operator values and the result are each rounded once, so a convolution is off by
~4e-3 relative (measured: 3.6e-3 forward, 3-5e-3 for both gradients; 2-level U-Nets in
evaluation mode 2.7e-3 to 5.1e-3 over seeds); the bounds below, 2e-2 relative to the output's
norm, leave 4x. U-Nets are compared in evaluation mode: in training mode the batch statistics of a
few hundred cells, subtracted from bfloat16 features, amplify the error to 1-2.2e-2 (measured,
nside 4, seeds 0-4), and each training-mode forward also moves the running statistics.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import foscat_core as fc  # noqa: E402
from foscat_core.nn import GCNN, HealpixUNet, PointwiseConv  # noqa: E402

BF16_TOL = 2e-2


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def test_conv_under_autocast_is_bfloat16_close_and_differentiable():
    st = fc.SphericalStencil(8, 3, backend="torch")
    gen = torch.Generator().manual_seed(0)
    for c_in, c_out in ((4, 4), (16, 2)):  # both forward orders (interpolate / contract first)
        x = torch.randn(2, c_in, st.n_cells, generator=gen, requires_grad=True)
        w = torch.randn(c_in, c_out, 9, generator=gen, requires_grad=True)
        ref = st.conv(x, w)
        gx_ref, gw_ref = torch.autograd.grad(ref.sum(), (x, w))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = st.conv(x, w)
        assert y.dtype == torch.bfloat16  # as torch.nn.Conv1d under the same context
        assert rel(y, ref) < BF16_TOL
        gx, gw = torch.autograd.grad(y.float().sum(), (x, w))
        assert gx.dtype == gw.dtype == torch.float32  # the inputs' dtypes
        assert torch.isfinite(gx).all() and torch.isfinite(gw).all()
        assert rel(gx, gx_ref) < BF16_TOL and rel(gw, gw_ref) < BF16_TOL


def test_unet_under_autocast_runs_in_bfloat16():
    net = HealpixUNet(in_nside=8, n_chan_in=2, chanlist=[4, 8], task="segmentation", out_channels=1,
                      backend="torch", seed=1).eval()
    x = torch.randn(3, 2, net.n_cells, generator=torch.Generator().manual_seed(1))
    ref = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.bfloat16  # convolutions, norms, pooling and the sigmoid all in bf16
    assert rel(y, ref) < BF16_TOL
    assert net.enc[0].conv1.weight.dtype == torch.float32  # autocast leaves the parameters alone


def test_network_built_in_bfloat16_trains_and_predicts():
    rng = np.random.default_rng(2)
    net = HealpixUNet(in_nside=4, n_chan_in=1, chanlist=[4, 8], backend="torch", dtype="bfloat16", seed=2)
    dtypes = {str(v.dtype) for _, v in net.named_variables()}
    assert dtypes == {"torch.bfloat16"}  # running statistics too, as torch.nn.BatchNorm1d().bfloat16()
    x = rng.normal(size=(4, 1, net.n_cells)).astype("float32")
    before = net.enc[0].conv1.weight.detach().clone()
    history = net.fit(x, 2 * x, n_epoch=1, batch_size=2, verbose=False)
    assert np.isfinite(history["train_loss"][0])
    assert not torch.equal(before, net.enc[0].conv1.weight)  # the step updated the weights
    pred = net.predict(x)
    assert pred.dtype.name == "bfloat16" and pred.shape == x.shape


def test_cast_network_follows_with_its_stencils():
    net = HealpixUNet(in_nside=4, n_chan_in=1, chanlist=[4, 8], backend="torch", seed=3).eval()
    x = torch.randn(2, 1, net.n_cells, generator=torch.Generator().manual_seed(3))
    ref = net(x)
    net.bfloat16()
    conv1, conv2 = net.enc[0].conv1, net.enc[0].conv2
    assert net.dtype == "bfloat16" and conv1.stencil.dtype == "bfloat16"
    assert conv1.stencil is conv2.stencil  # layers sharing a stencil still share one
    y = net(x.bfloat16())
    assert y.dtype == torch.bfloat16 and rel(y, ref) < BF16_TOL
    net.float()
    assert conv1.stencil.dtype == "float32" and net(x).dtype == torch.float32


def test_cast_refused_where_a_layer_cannot_follow():
    # GCNN's wavelet transform holds its bank in the build dtype and has no cast: said at the cast
    with pytest.raises(TypeError, match="build the network with dtype='bfloat16'"):
        GCNN(in_nside=4, chanlist=(1, 4, 1), backend="torch").bfloat16()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_elsewhere_is_a_value_error(dtype):
    with pytest.raises(ValueError, match=f"dtype='{dtype}' is not supported on the 'numpy' backend"):
        fc.SphericalStencil(4, 3, backend="numpy", dtype=dtype)
    with pytest.raises(ValueError, match="dtype="):
        HealpixUNet(in_nside=4, n_chan_in=1, chanlist=[4], backend="numpy", dtype=dtype)
    with pytest.raises(ValueError, match="dtype="):
        PointwiseConv(2, 2, backend="numpy", dtype=dtype)


def test_autocast_under_torch_compile_has_no_graph_break():
    net = HealpixUNet(in_nside=4, n_chan_in=1, chanlist=[4, 8], backend="torch", seed=4)

    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x)

    explained = torch._dynamo.explain(forward)(torch.randn(2, 1, net.n_cells))
    assert [str(b.reason)[:200] for b in explained.break_reasons] == []
