"""Every example runs (in a quick mode) so none can rot."""

import pytest

from conftest import AUTOGRAD_BACKENDS
from conftest import load_example as load


def test_quickstart(capsys):
    load("quickstart").main(["--backend", "numpy", "--nside", "16"])
    assert "correlation" in capsys.readouterr().out


@pytest.mark.parametrize("backend_name", AUTOGRAD_BACKENDS)
def test_unet_regional(backend_name, capsys):
    load("unet_regional").main(["--backend", backend_name, "--nside", "16", "--epochs", "2", "--quiet"])
    out = capsys.readouterr().out
    assert "validation MSE" in out and "predictions differ" in out
