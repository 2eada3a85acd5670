"""Distributed training and synthesis: ``fit`` and ``Synthesis.run`` under ``torchrun`` (2 gloo
processes on the CPU) give, on every rank, what one process gives on the same global batches;
``fit`` under a TensorFlow ``MirroredStrategy`` (2 logical CPU devices) the same."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import _distributed_worker as worker

HERE = Path(__file__).resolve().parent


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory):
    pytest.importorskip("torch")
    """The ranks' results of ``torchrun --standalone --nproc_per_node 2 _distributed_worker.py``."""
    out = tmp_path_factory.mktemp("torchrun")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "_distributed_worker.py"), str(out)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]
    return ranks, out, done.stdout + done.stderr


@pytest.fixture(scope="module")
def single_fit(tmp_path_factory):
    return worker.fit_scenario("torch")


def _weights(rank):
    return {k[2:]: v for k, v in rank.items() if k.startswith("w.")}


def test_fit_under_torchrun_gives_identical_ranks_equal_to_one_process(torchrun, single_fit):
    (r0, r1), _, _ = torchrun
    w0, w1 = _weights(r0), _weights(r1)
    weights, h1, h2 = single_fit
    assert sorted(w0) == sorted(weights) and any("running_var" in k for k in w0)
    for name, ref in weights.items():
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)  # one step, same numbers
        np.testing.assert_allclose(w0[name], ref, rtol=1e-5, atol=1e-5, err_msg=name)
    # The weights moved (a run that trained nothing would pass the comparisons above too).
    from foscat_core.nn import HealpixUNet

    start = {n: np.asarray(v) for n, v in HealpixUNet(4, 2, [4, 8], backend="numpy", seed=0).named_variables()}
    assert max(float(np.max(np.abs(w0[n] - start[n]))) for n in start if "weight" in n) > 1e-3
    # Losses are the global batches' (every rank reports the same).
    for key, ref in (("train_loss", h1["train_loss"]), ("val_loss", h1["val_loss"]), ("iter_loss", h2["train_loss"])):
        np.testing.assert_allclose(r0[key], ref, rtol=1e-5, err_msg=key)
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)


def test_batch_norm_statistics_are_those_of_the_global_batch(torchrun, single_fit):
    (r0, _), _, _ = torchrun
    weights, _, _ = single_fit
    names = [n for n in weights if n.endswith(("running_mean", "running_var"))]
    assert names
    for name in names:  # per-rank statistics of half batches would differ by ~1e-2 here
        np.testing.assert_allclose(_weights(r0)[name], weights[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_only_rank_zero_writes_the_checkpoint_and_logs(torchrun):
    _, out, log = torchrun
    assert (out / "fit.ckpt").exists()
    # One progress bar per fit (rank 0's), not two.
    # Two fits; tqdm may redraw a bar's final line once, so 2-4 (two ranks' bars would be 4-8).
    assert 2 <= log.count("fit HealpixUNet (torch): 100%") <= 4
    assert log.count("[rank1]") == 0 or "fit HealpixUNet" not in "".join(
        line for line in log.splitlines() if line.startswith("[rank1]"))


def test_a_batch_smaller_than_the_number_of_ranks_is_refused(torchrun):
    (r0, r1), _, _ = torchrun
    for rank in (r0, r1):
        message = str(rank["small_batch_error"])
        assert "cannot be shared by 2 replicas" in message and "batch_size >= 2" in message, message


def test_synthesis_distributed_argument_is_checked():
    pytest.importorskip("torch")
    from foscat_core.synthesis import Loss, Synthesis

    def to_three(x, scat_op, args):
        return scat_op.backend.xp.sum((x - 3.0) ** 2)

    synthesis = Synthesis([Loss(to_three, None, backend="torch")], verbose=False)
    with pytest.raises(ValueError, match="distributed=True needs several processes"):
        synthesis.run(np.zeros((2, 1, 4)), NUM_EPOCHS=2, distributed=True)
    with pytest.raises(ValueError, match="distributed must be None, True or False"):
        synthesis.run(np.zeros((2, 1, 4)), NUM_EPOCHS=2, distributed="yes")
    # Without a process group the default runs the whole batch in this process.
    np.testing.assert_allclose(synthesis.run(np.zeros((2, 1, 4)), NUM_EPOCHS=20), 3.0, atol=1e-6)


def test_synthesis_under_torchrun_splits_the_maps_and_gathers_them_on_every_rank(torchrun):
    (r0, r1), _, _ = torchrun
    maps = worker.synthesis_maps()
    np.testing.assert_array_equal(r0["synthesis"], r1["synthesis"])
    assert r0["synthesis"].shape == maps.shape
    # Each rank optimised its contiguous share alone (maps 0-1 and 2-4): bit for bit what one
    # process gives on those shares.
    shares = [worker.synthesis_scenario("torch", maps[:2]), worker.synthesis_scenario("torch", maps[2:])]
    np.testing.assert_allclose(r0["synthesis"], np.concatenate(shares), rtol=0, atol=1e-12)
    # And, the loss being a sum of per-cell terms, what one process gives on the whole batch: both
    # runs converge to the minimum of each cell's well (factr=1: to ~1e-7 in the loss, so ~1e-4 in x
    # near a minimum of curvature ~8; measured difference ~1e-6).
    whole = worker.synthesis_scenario("torch", maps)
    np.testing.assert_allclose(r0["synthesis"], whole, atol=1e-4)
    assert np.abs(r0["synthesis"] - maps).max() > 0.1  # the maps moved


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """The TensorFlow scenario in a fresh process (logical devices must be set before TF starts)."""
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("mirrored")
    env = dict(_env(), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(HERE / "_distributed_worker.py"), "tf", str(out)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(np.load(out / "tf.npz"))


def test_fit_under_a_mirrored_strategy_equals_one_device(mirrored):
    assert int(mirrored["replicas"]) == 2
    ref = {k[4:]: v for k, v in mirrored.items() if k.startswith("ref.")}
    got = {k[4:]: v for k, v in mirrored.items() if k.startswith("got.")}
    assert sorted(ref) == sorted(got) and any("running_var" in k for k in ref)
    for name in ref:  # per-replica batch-norm statistics would differ by ~1e-2 here
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(mirrored["got_loss"], mirrored["ref_loss"], rtol=1e-5)
    assert mirrored["ref_loss"][1] < mirrored["ref_loss"][0]  # it trained


def test_fit_refuses_what_it_cannot_distribute(mirrored):
    assert "OneDeviceStrategy" in str(mirrored["error.other_strategy"])
    assert "strategy.scope()" in str(mirrored["error.outside_scope"])
