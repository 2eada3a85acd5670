"""Issue 11: synthesis never accepts a non-finite point, boolean gradient masks, funct's numeric arguments."""

import warnings

import numpy as np
import pytest

from conftest import AUTOGRAD_BACKENDS
from foscat_core.scattering import funct
from foscat_core.synthesis import Loss, Synthesis

pytestmark = pytest.mark.parametrize("bk", AUTOGRAD_BACKENDS)


def _quadratic(x, scat_op, args):  # minimum at x = 3
    return scat_op.backend.xp.sum((x - 3.0) ** 2)


def _nan_beyond_two(x, scat_op, args):
    """Finite for x < 2, NaN (loss and gradient) beyond: the minimum of the finite part lies in the NaN region."""
    xp = scat_op.backend.xp
    return xp.sum((x - 3.0) ** 2) + xp.sum(xp.sqrt(2.0 - x))


def _inf_beyond_two(x, scat_op, args):
    """A barrier that overflows to inf (loss and gradient) a little beyond x = 2."""
    xp = scat_op.backend.xp
    return xp.sum((x - 3.0) ** 2) + xp.sum(xp.exp(1e4 * (x - 2.0)))


def _run(bk, fn, x0, **kw):
    return Synthesis([Loss(fn, None, backend=bk)], verbose=False).run(x0, NUM_EPOCHS=50, **kw)


@pytest.mark.parametrize("fn, value", [(_nan_beyond_two, "nan"), (_inf_beyond_two, "inf")])
def test_non_finite_iterate_is_rejected_with_a_warning(bk, fn, value):
    with pytest.warns(RuntimeWarning, match=rf"non-finite at iteration \d+ \(loss '{fn.__name__}' is {value}") as rec:
        out = _run(bk, fn, np.zeros(4))
    assert "last finite one" in str(rec[0].message)
    assert np.all(np.isfinite(out)) and np.all(out < 2.01)
    assert np.all(out > 1.5)  # it did move towards the boundary before stopping there
    loss_out = float(Loss(fn, None, backend="numpy").eval(out))
    assert np.isfinite(loss_out) and loss_out < float(Loss(fn, None, backend="numpy").eval(np.zeros(4)))


def test_finite_run_gives_no_warning(bk):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = _run(bk, _quadratic, np.zeros(4))
    np.testing.assert_allclose(out, 3.0, atol=1e-6)


def test_nan_gradient_at_the_start_is_an_error(bk):
    def sqrt_loss(x, scat_op, args):  # finite value 0 at x = 0, infinite gradient
        return scat_op.backend.xp.sum(scat_op.backend.xp.sqrt(x))

    with pytest.raises(ValueError, match=r"at in_x is not finite \(the gradient has 4 NaN or infinite entries\)"):
        _run(bk, sqrt_loss, np.zeros(4))


def test_nan_loss_at_the_start_names_the_loss(bk):
    def log_loss(x, scat_op, args):
        return scat_op.backend.xp.sum(scat_op.backend.xp.log(x - 1.0))

    losses = [Loss(_quadratic, None, backend=bk), Loss(log_loss, None, backend=bk, name="logterm")]
    with pytest.raises(ValueError, match=r"at in_x is not finite \(loss 'logterm' is nan"):
        Synthesis(losses, verbose=False).run(np.zeros(4), NUM_EPOCHS=5)


def test_restart_that_starts_non_finite_keeps_the_map_reached(bk):
    batches = iter([0.0, np.nan])

    def shifted(x, batch, scat_op, args):
        return scat_op.backend.xp.sum((x - 3.0) ** 2) + batch

    loss = Loss(shifted, None, backend=bk, batch_update=lambda data: next(batches))
    synth = Synthesis([loss], verbose=False)
    with pytest.warns(RuntimeWarning, match=r"at the start of restart 1, loss 'shifted' is nan"):
        out = synth.run(np.zeros(4), NUM_EPOCHS=50, NUM_STEP_BIAS=2)
    np.testing.assert_allclose(out, 3.0, atol=1e-6)  # the result of restart 0
    assert np.all(np.isfinite(synth.get_history()))


def _mask_as(kind, bk, mask):
    if kind == "tensor":
        from foscat_core.backends import get_backend

        return get_backend(bk).asarray(mask)
    return mask


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_boolean_grd_mask_freezes_false_entries(bk, kind):
    mask = np.array([True, False, True, False])
    out = _run(bk, _quadratic, np.zeros(4), grd_mask=_mask_as(kind, bk, mask))
    np.testing.assert_allclose(out, [3.0, 0.0, 3.0, 0.0], atol=1e-6)
    assert out[1] == 0.0 and out[3] == 0.0


def test_boolean_grd_mask_as_dataarray(bk):
    xr = pytest.importorskip("xarray")
    cells = np.arange(48)
    attrs = {"grid_name": "healpix", "level": 1, "indexing_scheme": "nested"}
    x0 = xr.DataArray(np.zeros((1, 48)), dims=("time", "cells"), coords={"cell_ids": ("cells", cells)}, attrs=attrs)
    frozen = np.zeros((48, 1), bool)
    frozen[::2] = True  # given in another dim order: aligned by name
    mask = xr.DataArray(frozen, dims=("cells", "time"))
    out = _run(bk, _quadratic, x0, grd_mask=mask)
    assert out.dims == x0.dims
    np.testing.assert_allclose(out.values[0, ::2], 3.0, atol=1e-6)
    assert np.all(out.values[0, 1::2] == 0.0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"LAMBDA": "abc"}, TypeError, r"LAMBDA must be a positive finite number, got str 'abc'"),
    ({"LAMBDA": True}, TypeError, r"LAMBDA must be .* got bool"),
    ({"LAMBDA": [1.2]}, TypeError, r"LAMBDA must be .* got list"),
    ({"LAMBDA": float("nan")}, ValueError, r"LAMBDA must be a positive finite number, got nan"),
    ({"LAMBDA": -1}, ValueError, r"LAMBDA must be a positive finite number"),
    ({"KERNELSZ": "abc"}, TypeError, r"KERNELSZ must be an odd integer"),
    ({"NORIENT": "abc"}, ValueError, r"NORIENT must be a positive integer"),
    ({"JmaxDelta": "1"}, ValueError, r"JmaxDelta must be a non-negative integer"),
    ({"nstep_max": 2.5}, ValueError, r"nstep_max must be a positive integer"),
])
def test_funct_numeric_arguments_are_named(bk, kwargs, error, match):
    with pytest.raises(error, match=match):
        funct(backend=bk, **kwargs)


def test_funct_accepts_numpy_scalars(bk):
    op = funct(KERNELSZ=np.int64(3), NORIENT=np.int32(2), LAMBDA=np.float32(1.2), backend=bk)
    assert op.LAMBDA == pytest.approx(1.2) and isinstance(op.LAMBDA, float)
