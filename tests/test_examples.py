"""Every example runs (in a quick mode) so none can rot."""

import importlib.util
from pathlib import Path

import pytest

from conftest import AUTOGRAD_BACKENDS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart(capsys):
    load("quickstart").main(["--backend", "numpy", "--nside", "16"])
    assert "correlation" in capsys.readouterr().out


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_unet_regional(backend_name, capsys):
    load("unet_regional").main(["--backend", backend_name, "--nside", "16", "--epochs", "2", "--quiet"])
    out = capsys.readouterr().out
    assert "validation MSE" in out and "predictions differ" in out
