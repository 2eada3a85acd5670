"""Synthesis with the scattering-covariance loss: white noise towards a log-normal field."""

import healpy as hp
import numpy as np
import pytest

scattering = pytest.importorskip("foscat_core.scattering")

from foscat_core.synthesis import Loss, Synthesis  # noqa: E402

NSIDE = 8
NPIX = 12 * NSIDE**2



def _lognormal_map():
    rng = np.random.default_rng(7)
    ring = hp.smoothing(rng.normal(size=NPIX), fwhm=np.radians(15))
    field = hp.reorder(np.exp(ring / ring.std()), r2n=True)
    return (field - field.mean()) / field.std()


def _skewness(m):
    c = m - m.mean()
    return float(np.mean(c**3) / np.mean(c**2) ** 1.5)


def scattering_loss(x, scat_op, args):
    st = scat_op.eval(x)
    return st.reduce_mean_batch((st - args[0]) ** 2)


def test_scattering_synthesis_reaches_the_target(autograd_backend, one_torch_thread):
    op = scattering.funct(KERNELSZ=5, NORIENT=4, all_type="float64", backend=autograd_backend)
    target = _lognormal_map()
    reference = op.eval(target)
    x0 = np.random.default_rng(0).normal(size=NPIX)
    synth = Synthesis([Loss(scattering_loss, op, reference)], verbose=False)
    out = synth.run(x0, NUM_EPOCHS=80)
    hist = synth.get_history()
    assert out.shape == x0.shape and np.all(np.isfinite(out))
    assert hist[-1] < 1e-2 * hist[0], f"scattering loss went from {hist[0]:.3e} to {hist[-1]:.3e}"
    want, start, got = _skewness(target), _skewness(x0), _skewness(out)
    # White noise is far from the target's skewness (0.13 vs 3.7); the synthesis comes most of the way
    # (the scattering statistics constrain the one-point distribution only indirectly: about 3.1 here).
    assert abs(start - want) > 2.0
    assert abs(got - want) < 0.2 * abs(want), f"skewness {got:.3f}, target {want:.3f}, white noise {start:.3f}"
    assert abs(got - want) < 0.25 * abs(start - want)


def test_scattering_loss_shares_the_plain_backend(autograd_backend):
    op = scattering.funct(KERNELSZ=3, NORIENT=2, all_type="float32", backend=autograd_backend)
    loss = Loss(scattering_loss, op, None)
    assert loss.backend.name == autograd_backend and loss.dtype == "float32"  # from op.all_type
    plain = Loss(lambda x, o, a: o.backend.xp.sum(x**2), None, backend=autograd_backend)
    assert loss.backend is plain.backend
    Synthesis([loss, plain], verbose=False)  # one backend, whether wrapped by the operator or not
