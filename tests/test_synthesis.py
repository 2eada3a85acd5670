"""Loss and Synthesis: L-BFGS-B synthesis on torch and TensorFlow with simple differentiable statistics."""

import healpy as hp
import numpy as np
import pytest

import foscat_core as fc
from foscat_core.synthesis import Loss, Synthesis

NSIDE = 8
NPIX = 12 * NSIDE**2


def _target_map():
    """A non-Gaussian field: exp of a smoothed Gaussian map, normalised (NESTED)."""
    rng = np.random.default_rng(7)
    ring = hp.smoothing(rng.normal(size=NPIX), fwhm=np.radians(15))
    field = np.exp(ring / ring.std())
    field = hp.reorder(field, r2n=True)
    return (field - field.mean()) / field.std()


def _filters():
    """East and north first differences and a Laplacian on the 3x3 stencil, shape (1, 3, 9)."""
    w = np.zeros((1, 3, 9))
    w[0, 0, 5], w[0, 0, 3] = 1.0, -1.0  # east - west
    w[0, 1, 1], w[0, 1, 7] = 1.0, -1.0  # north - south
    w[0, 2, [1, 3, 5, 7]], w[0, 2, 4] = 1.0, -4.0  # Laplacian
    return w


class MomentStatistics:
    """Mean, variance, skewness, kurtosis and the variance of three local derivative filters.

    Written once with the backend namespace; ``.backend`` makes it usable as a Loss's ``scat_op``.
    """

    def __init__(self, backend):
        self.stencil = fc.SphericalStencil(NSIDE, 3, backend=backend, dtype="float64")
        self.backend = self.stencil.backend
        self.filters = _filters()

    def __call__(self, x):
        xp = self.backend.xp
        mean = xp.mean(x)
        centred = x - mean
        var = xp.mean(centred**2)
        stats = [mean, var, xp.mean(centred**3) / var**1.5, xp.mean(centred**4) / var**2]
        deriv = self.stencil.conv(xp.reshape(x, (1, 1, NPIX)), self.filters)
        stats += [xp.mean(deriv[0, k] ** 2) for k in range(3)]
        return stats


def moment_loss(x, scat_op, args):
    target = args[0]
    total = None
    for s, t in zip(scat_op(x), target):
        term = (s - float(t)) ** 2
        total = term if total is None else total + term
    return total


def _make(backend):
    stats = MomentStatistics(backend)
    target = [float(v) for v in stats.backend.to_numpy(stats.backend.xp.stack(stats(stats.backend.asarray(_target_map()))))]
    return stats, target


def _white_noise(seed=0):
    return np.random.default_rng(seed).normal(size=NPIX)


def test_moment_synthesis_lowers_loss(autograd_backend):
    stats, target = _make(autograd_backend)
    synth = Synthesis([Loss(moment_loss, stats, target)], verbose=False)
    x0 = _white_noise()
    out = synth.run(x0, NUM_EPOCHS=150)
    hist = synth.get_history()
    assert out.shape == x0.shape and out.dtype == np.float64
    assert np.all(np.isfinite(out))
    assert hist[-1] < 1e-4 * hist[0], f"loss went from {hist[0]:.3e} to {hist[-1]:.3e}"
    assert np.all(np.diff(hist) <= 1e-12 * hist[0])  # L-BFGS-B accepts only descending steps
    got = [float(v) for v in stats.backend.to_numpy(stats.backend.xp.stack(stats(stats.backend.asarray(out))))]
    np.testing.assert_allclose(got[2], target[2], rtol=0.05)  # the skewness of the exponentiated field


def test_torch_and_tensorflow_agree_on_first_iterations():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    x0 = _white_noise(3)
    histories, outs = [], []
    for name in ("torch", "tensorflow"):
        stats, target = _make(name)
        synth = Synthesis([Loss(moment_loss, stats, target)], verbose=False)
        outs.append(synth.run(x0, NUM_EPOCHS=5))
        histories.append(synth.get_history())
    assert len(histories[0]) == len(histories[1]) == 6
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-8)
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-6, atol=1e-8)


def test_grd_mask_freezes_cells(autograd_backend):
    stats, target = _make(autograd_backend)
    x0 = _white_noise(1)
    mask = np.ones(NPIX)
    mask[: NPIX // 3] = 0.0
    synth = Synthesis([Loss(moment_loss, stats, target)], verbose=False)
    out = synth.run(x0, NUM_EPOCHS=40, grd_mask=mask)
    frozen = mask == 0
    assert np.array_equal(out[frozen], x0[frozen])
    assert np.max(np.abs(out[~frozen] - x0[~frozen])) > 1e-3
    hist = synth.get_history()
    assert hist[-1] < 0.1 * hist[0]


def test_idx_grd_moves_only_listed_cells(autograd_backend):
    stats, target = _make(autograd_backend)
    x0 = _white_noise(2)[None, None, :]  # (B, C, N): idx_grd indexes the cells axis
    idx = np.arange(0, NPIX, 2)
    synth = Synthesis([Loss(moment_loss, stats, target)], verbose=False)
    out = synth.run(x0, NUM_EPOCHS=10, idx_grd=idx)
    assert out.shape == x0.shape
    still = np.ones(NPIX, bool)
    still[idx] = False
    assert np.array_equal(out[0, 0, still], x0[0, 0, still])
    assert not np.array_equal(out[0, 0, idx], x0[0, 0, idx])


def test_numpy_backend_cannot_synthesise():
    loss = Loss(lambda x, op, args: op.backend.xp.sum(x**2), None, backend="numpy")
    with pytest.raises(NotImplementedError, match="torch.*tensorflow"):
        Synthesis([loss])


def _sq(x, op, args):
    return op.backend.xp.sum((x - 1.0) ** 2)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.array([1.0, np.nan, 0.0]), ValueError, "in_x must be finite"),
        (np.array([1.0, np.inf, 0.0]), ValueError, "in_x must be finite"),
        (np.array(["a", "b"]), TypeError, "in_x"),
        (np.array([1 + 1j, 2.0]), TypeError, "in_x"),
        (np.array([True, False]), TypeError, "in_x"),
        (np.zeros(0), ValueError, "in_x"),
        ({"a": 1}, TypeError, "in_x"),
    ],
)
def test_bad_in_x(autograd_backend, bad, error, match):
    with pytest.raises(error, match=match):
        Synthesis([Loss(_sq, None, backend=autograd_backend)], verbose=False).run(bad, NUM_EPOCHS=2)


def test_bad_run_arguments(autograd_backend):
    synth = Synthesis([Loss(_sq, None, backend=autograd_backend)], verbose=False)
    x0 = np.zeros(6)
    with pytest.raises(ValueError, match="grd_mask"):
        synth.run(x0, grd_mask=np.ones(5))
    with pytest.raises(ValueError, match="grd_mask"):
        synth.run(x0, grd_mask=np.array([1, 0, 1, np.nan, 1, 1.0]))
    with pytest.raises(ValueError, match="no entry"):
        synth.run(x0, grd_mask=np.zeros(6))
    with pytest.raises(ValueError, match="idx_grd"):
        synth.run(x0, idx_grd=[0, 6])
    with pytest.raises(ValueError, match="NUM_EPOCHS"):
        synth.run(x0, NUM_EPOCHS=0)
    with pytest.raises(ValueError, match="factr"):
        synth.run(x0, factr=-1.0)
    with pytest.raises(ValueError, match="axis"):
        synth.run(x0, axis=3)


def test_bad_losses(autograd_backend):
    other = "tensorflow" if autograd_backend == "torch" else "torch"
    pytest.importorskip(other)
    with pytest.raises(ValueError, match="one backend"):
        Synthesis([Loss(_sq, None, backend=autograd_backend), Loss(_sq, None, backend=other)])
    with pytest.raises(TypeError, match="loss_list"):
        Synthesis([_sq])
    with pytest.raises(ValueError, match="at least one"):
        Synthesis([])
    with pytest.raises(TypeError, match="scat_op"):
        Loss(_sq, object())
    with pytest.raises(TypeError, match="function"):
        Loss(3.0, None, backend=autograd_backend)

    def to_numpy_loss(x, op, args):  # the mistake of converting x to NumPy: no gradient
        return float(np.sum(op.backend.to_numpy(x) ** 2))

    with pytest.raises(TypeError, match="backend operations"):
        Synthesis([Loss(to_numpy_loss, None, backend=autograd_backend)], verbose=False).run(np.ones(3))

    def constant_loss(x, op, args):
        return op.backend.asarray(np.float64(1.0))

    with pytest.raises(ValueError, match="do not depend on x"):
        Synthesis([Loss(constant_loss, None, backend=autograd_backend)], verbose=False).run(np.ones(3))

    def vector_loss(x, op, args):
        return x**2

    with pytest.raises(ValueError, match="scalar"):
        Synthesis([Loss(vector_loss, None, backend=autograd_backend)], verbose=False).run(np.ones(3))


def test_batch_update_refreshes_batch_at_each_restart(autograd_backend):
    seen, updates = [], []

    def batched_loss(x, batch, op, args):
        seen.append(batch["id"])
        return op.backend.xp.sum((x - batch["target"]) ** 2) * args[0]

    def update(data):
        updates.append(data["next"])
        batch = {"id": data["next"], "target": float(data["next"])}
        data["next"] += 1
        return batch

    data = {"next": 1}
    loss = Loss(batched_loss, None, 0.5, batch={"id": 0, "target": 0.0}, batch_data=data, batch_update=update,
                backend=autograd_backend)
    synth = Synthesis([loss], verbose=False)
    out = synth.run(np.full(5, 3.0), NUM_EPOCHS=10, NUM_STEP_BIAS=3)
    assert updates == [1, 2]  # between restarts only: the first restart uses the batch given
    restarts = [seen.index(k) for k in (0, 1, 2)]
    assert restarts == sorted(restarts) and set(seen) == {0, 1, 2}
    assert seen[-1] == 2
    np.testing.assert_allclose(out, 2.0, atol=1e-6)  # the last restart's target

    # Without an initial batch, batch_update makes the first one too.
    updates.clear()
    data["next"] = 5
    loss = Loss(batched_loss, None, 1.0, batch_data=data, batch_update=update, backend=autograd_backend)
    Synthesis([loss], verbose=False).run(np.zeros(2), NUM_EPOCHS=3, NUM_STEP_BIAS=2)
    assert updates == [5, 6]


def test_several_losses_history_track_info(autograd_backend):
    def pull(x, op, args):
        return op.backend.xp.sum((x - args[0]) ** 2)

    def with_info(x, op, args, return_all=False):
        value = op.backend.xp.mean(x**2) * args[0]
        return (value, float(op.backend.to_numpy(value))) if return_all else value

    losses = [Loss(pull, None, 2.0, backend=autograd_backend, name="pull"),
              Loss(with_info, None, 0.1, backend=autograd_backend, info_callback=True, dtype="float32")]
    synth = Synthesis(losses, verbose=False)
    out = synth.run(np.zeros((2, 3), np.float32), NUM_EPOCHS=30, EVAL_FREQUENCY=2, KEEP_TRACK=lambda m: m.sum())
    assert out.shape == (2, 3) and out.dtype == np.float32
    # Minimum of sum (x-2)^2 + 0.1 * mean(x^2): x = 2 / (1 + 0.1 / 6).
    np.testing.assert_allclose(out, 2.0 / (1.0 + 0.1 / 6), rtol=1e-5)
    hist = synth.get_history()
    assert hist[0] == pytest.approx(6 * 4.0) and hist[-1] < hist[0]
    assert len(synth.get_track()) >= 2 and synth.get_track()[0] == 0.0
    info = synth.get_info()
    assert info and all(k == 1 for _, k, _ in info) and info[0][0] == 0


def test_verbose_prints_loss_lines(autograd_backend, capsys):
    synth = Synthesis([Loss(_sq, None, backend=autograd_backend, name="sq")])
    synth.run(np.zeros(3), NUM_EPOCHS=5, EVAL_FREQUENCY=1, MESSAGE="demo ")
    captured = capsys.readouterr()
    assert "demo Itt      0" in captured.out + captured.err
    assert "sq=" in captured.out + captured.err


def test_example_runs(autograd_backend, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "synthesis_moments.py"
    spec = importlib.util.spec_from_file_location("synthesis_moments", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--backend", autograd_backend, "--nside", "8", "--epochs", "30", "--quiet"])
    assert out.shape == (768,)
    assert "skewness" in capsys.readouterr().out


def test_keyboard_interrupt_returns_last_accepted_map(autograd_backend):
    calls = []

    def stoppable(x, op, args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return op.backend.xp.sum((x - 1.0) ** 2) + 0.1 * op.backend.xp.sum(x**4)

    synth = Synthesis([Loss(stoppable, None, backend=autograd_backend)], verbose=False)
    out = synth.run(np.zeros(3), NUM_EPOCHS=50)
    hist = synth.get_history()
    assert np.all(np.isfinite(out)) and len(hist) >= 2 and hist[-1] < hist[0]


def test_losses_receive_x_in_the_shape_of_in_x(autograd_backend):
    """A (B, N) start reaches the losses as a (B, N) tensor, and comes back as (B, N)."""
    bk = fc.get_backend(autograd_backend)
    seen = []
    target = np.array([[1.0], [-2.0]])

    def per_row_mean(x, scat_op, args):
        seen.append(tuple(int(s) for s in x.shape))
        xp = scat_op.backend.xp
        return xp.sum((xp.mean(x, axis=1, keepdims=True) - bk.asarray(target)) ** 2)

    x0 = np.random.default_rng(0).normal(size=(2, 48))
    out = Synthesis([Loss(per_row_mean, None, backend=autograd_backend)], verbose=False).run(x0, NUM_EPOCHS=30)
    assert out.shape == (2, 48)
    assert set(seen) == {(2, 48)}
    np.testing.assert_allclose(out.mean(axis=1), target[:, 0], atol=1e-6)
