"""The main demo runs end to end in --quick mode on every training backend."""

import json
import math

import pytest

from conftest import AUTOGRAD_BACKENDS
from foscat_core.__main__ import main


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_demo_quick(backend_name, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    main(["demo", "--quick", "--quiet", "--backend", backend_name, "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    for key in ("val_loss_final", "val_mse_network", "val_mse_baseline", "skill_score", "stat_distance_start",
                "stat_distance_final", "train_seconds", "synthesis_seconds"):
        assert math.isfinite(results[key]), key
    assert results["skill_score"] > 0, results  # beats "the observation itself"
    assert results["val_loss_final"] < results["val_loss_first_epoch"]
    assert results["stat_distance_final"] < 0.5 * results["stat_distance_start"]
    assert results["backend"] == backend_name
    for name, path in results["figures"].items():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert {"maps", "training_loss", "synthesis_maps", "synthesis_loss", "statistics"} <= set(results["figures"])


@pytest.mark.parametrize("args", [["--backend", "mxnet"], ["--nside", "12"], ["--nside", "4"], ["--epochs", "0"]])
def test_demo_rejects_bad_arguments(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--quiet", *args])
    assert exit_info.value.code == 2
    assert args[0] in capsys.readouterr().err
