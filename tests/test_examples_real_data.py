"""The real-data examples (ocean gap filling from an xdggs zarr store, RING cosmology maps) run in
their quick mode on every autograd backend and show what they claim."""

import numpy as np

from conftest import load_example as load


def test_cosmology_ring(autograd_backend, capsys):
    out = load("cosmology_ring").main(["--backend", autograd_backend, "--quick", "--quiet"])
    printed = capsys.readouterr().out
    assert "RING maps" in printed and "ell band" in printed
    assert out["loss_final"] < 0.1 * out["loss_start"]
    # White noise has far too little large-scale power; the syntheses get within a factor 2 in every band.
    synth = np.array([r for _, _, r in out["bands_synthesis"]])
    noise = np.array([r for _, _, r in out["bands_white_noise"]])
    assert np.all((synth > 0.5) & (synth < 2.0))
    assert noise[0] < 0.2 and abs(np.log(synth[0])) < abs(np.log(noise[0]))


def test_ocean_gap_filling(autograd_backend, capsys):
    out = load("ocean_gap_filling").main(["--backend", autograd_backend, "--quick", "--quiet"])
    printed = capsys.readouterr().out
    assert "RMSE under clouds" in printed and "DataArray" in printed
    # Land stays NaN, clouds are filled, the answer sits on the store's cells with its xdggs attributes.
    assert out["land_kept_nan"] and out["ocean_finite"] and out["same_cells"]
    assert out["grid_attrs"]["grid_name"] == "healpix" and out["grid_attrs"]["level"] == 4
    assert np.isfinite(out["rmse_network"]) and out["rmse_climatology"] > 0
    assert out["train_loss"][-1] < out["train_loss"][0]
