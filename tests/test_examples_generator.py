"""``examples/generator.py`` runs in quick mode on every autograd backend, prints what it claims and
returns sane numbers (the loss goes down, the samples differ, the moments are near the target's)."""

import importlib.util

import numpy as np
import pytest

from conftest import load_example


def test_generator_example(autograd_backend, capsys, tmp_path):
    out = load_example("generator").main(["--backend", autograd_backend, "--quick", "--quiet"]
                                         + (["--out", str(tmp_path)] if importlib.util.find_spec("matplotlib") else []))
    printed = capsys.readouterr().out
    assert "band power / target's" in printed and "ms per sample" in printed
    loss = np.asarray(out["loss"])
    assert np.all(np.isfinite(loss)) and loss[-5:].mean() < 0.5 * loss[:5].mean()
    assert out["final_distance"] < 0.5 * out["initial_distance"]
    assert out["mean_abs_corr"] < 0.3 and out["max_abs_corr_with_target"] < 0.6
    assert out["target_skewness"] > 1.0 and out["skewness"] > 0.3   # lognormal: skewed, and so are samples
    assert all(0.2 < r < 5.0 for _, _, r in out["bands"])
    assert 0.0 < out["ms_per_sample"] < 1e3
    if "figures" in out:
        assert all(p.endswith(".png") for p in out["figures"]) and len(out["figures"]) == 2


def test_generator_example_helpers():
    ex = load_example("generator")
    assert ex.octave_bands(64) == [(4, 8), (8, 16), (16, 32), (32, 64), (64, 129)]
    assert ex.octave_bands(8) == [(4, 8), (8, 17)]
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(6, 768))
    assert ex.mean_abs_corr(maps) < 0.1
    skew, kurt = ex.moments(maps)
    assert np.all(np.abs(skew) < 0.5) and np.all(np.abs(kurt) < 0.6)
    target = ex.lognormal_target(8)
    assert target.shape == (768,) and abs(target.mean()) < 1e-9 and ex.moments(target)[0][0] > 1.0
    with pytest.raises(SystemExit):
        ex.main(["--backend", "mxnet"])
