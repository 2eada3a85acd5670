"""The capability examples (segmentation, scattering statistics, inpainting, hybrid prior) run in
their quick mode on every autograd backend, print what they claim and return sensible numbers."""

import numpy as np
import pytest

from conftest import load_example as load


def test_segmentation(autograd_backend, capsys):
    out = load("segmentation").main(["--backend", autograd_backend, "--quick"])
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "IoU hot" in printed and "majority (neutral)" in printed
    assert len(out["iou"]) == 3 and all(0.0 <= v <= 1.0 for v in out["iou"])
    # The network beats "neutral everywhere", both in accuracy and in mean IoU.
    assert out["accuracy"] > out["baseline_accuracy"] + 0.05
    assert out["mean_iou"] > out["baseline_mean_iou"]
    assert out["val_loss"][-1] < out["val_loss"][0]


def test_scattering_statistics(capsys):
    # No training or synthesis: the statistics are the same on every backend; NumPy is the fastest.
    out = load("scattering_statistics").main(["--backend", "numpy", "--quick"])
    printed = capsys.readouterr().out
    assert "full sky" in printed and "|S3|/S2" in printed and "rel. diff" in printed
    for domain in ("full_sky", "region"):
        rows = out[domain]
        power_like = max(rows["S1"]["rel_diff"], rows["S2"]["rel_diff"])
        assert power_like < 0.25
        # The phase-sensitive statistics separate the fields far more than the power-like ones.
        assert rows["|S3|/S2"]["rel_diff"] > 2 * power_like
        assert rows["|S4|/S2"]["rel_diff"] > power_like
        assert rows["|S3|/S2"]["lognormal"] > rows["|S3|/S2"]["gaussian"]
    assert out["skewness"][1] > 1.0 and abs(out["skewness"][0]) < 0.5


def test_scattering_statistics_same_numbers_on_autograd_backend(autograd_backend):
    ref = load("scattering_statistics").main(["--backend", "numpy", "--quick"])
    out = load("scattering_statistics").main(["--backend", autograd_backend, "--quick"])
    for domain in ("full_sky", "region"):
        for name, row in out[domain].items():
            assert row["lognormal"] == pytest.approx(ref[domain][name]["lognormal"], rel=1e-6)


def test_inpainting(autograd_backend, capsys):
    out = load("inpainting").main(["--backend", autograd_backend, "--quick", "--quiet"])
    printed = capsys.readouterr().out
    assert "observed cells unchanged exactly: True" in printed
    assert out["observed_unchanged"] and out["observed_max_change"] == 0.0
    assert out["hidden_rms_change"] > 0.1
    assert out["distance_final"] < 0.5 * out["distance_start"]


def test_hybrid_prior(autograd_backend, capsys):
    out = load("hybrid_prior").main(["--backend", autograd_backend, "--quick", "--quiet"])
    printed = capsys.readouterr().out
    assert "U-Net prior" in printed and "cut prior" in printed
    assert out["loss_final"] < 0.5 * out["loss_start"]
    assert out["statistics_final"] < out["statistics_start"] and out["prior_final"] < out["prior_start"]
    # The gradient reaches x through the network; through NumPy it does not, and such a loss is refused.
    assert out["gradient_norms"]["U-Net prior"] > 0.0
    assert out["gradient_norms"]["cut prior"] == 0.0
    assert "no gradient" in out["cut_prior_refused"]
    # The prior shapes the result: lower prior than a statistics-only synthesis reaches.
    assert out["prior_final"] < out["stats_only_prior"]
    assert len(out["track"]) >= 2 and np.all(np.isfinite(out["track"]))


def test_figures_written(tmp_path):
    out = tmp_path / "figures"  # not there yet: the examples create it
    load("segmentation").main(["--quick", "--epochs", "1", "--out", str(out)])
    load("scattering_statistics").main(["--backend", "numpy", "--quick", "--out", str(out)])
    load("inpainting").main(["--quick", "--quiet", "--epochs", "3", "--out", str(out)])
    load("hybrid_prior").main(["--quick", "--quiet", "--epochs", "1", "--iterations", "3", "--out", str(out)])
    for name in ("segmentation", "scattering_statistics", "inpainting", "hybrid_prior", "hybrid_prior_history"):
        png = out / f"{name}.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
