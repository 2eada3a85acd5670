"""Fill cloud gaps in a regional sea-surface temperature record stored as an xdggs zarr dataset.

Run:  python examples/ocean_gap_filling.py [--backend torch|tensorflow] [--nside 32] [--days 96]
                                           [--epochs 60] [--quick] [--out DIR]

The data is synthetic but shaped like the real thing: daily SST on a regional HEALPix domain (a
disc in the North Atlantic, NESTED), a climatology that warms towards the equator, moving
anomalies, land that is always NaN and clouds that hide a different part of the ocean each day
(NaN too). It is written to a zarr store in the xdggs convention (a ``cell_ids`` coordinate with
``grid_name``, ``level`` and ``indexing_scheme`` attributes) and opened again lazily (dask), as a
user would open theirs. Nothing below is glue: the network is built from the grid
(``HealpixUNet.from_grid``), reads the dask arrays batch by batch in ``fit``, fills missing inputs
itself (``mask_missing=True``), learns in normalised units but predicts in degrees
(``normalize=True``), ignores unlabelled target cells (land), and ``predict`` returns a DataArray
with the same coordinates, land kept as NaN.

The targets are the cloud-free truth, which a synthetic record can give. Printed: the RMSE under
the clouds of the prediction and of the climatology (the trivial gap filler) on held-out days.
``--quick`` is CI-sized (nside 16, a few days and epochs); ``--out DIR`` writes
``ocean_gap_filling.png`` (observed / true / filled anomaly of one held-out day).
"""

import argparse
import tempfile
from pathlib import Path

import healpy as hp
import numpy as np
import xarray as xr

from foscat_core.nn import HealpixUNet

CENTRE = (40.0, -35.0)  # latitude, longitude of the domain's centre (degrees)


def domain(nside, radius_deg=25.0):
    lat, lon = CENTRE
    centre = hp.ang2vec(lon, lat, lonlat=True)
    return hp.query_disc(nside, centre, np.radians(radius_deg), nest=True).astype(np.int64)


def synthetic_record(nside, cell_ids, n_days, seed=0):
    """(truth, observed, climatology, land, clouds) on ``cell_ids``: (days, cells) arrays."""
    rng = np.random.default_rng(seed)
    lon, lat = hp.pix2ang(nside, cell_ids, nest=True, lonlat=True)
    climatology = 28.0 - 0.35 * (lat - 10.0)
    vec = np.array(hp.pix2vec(nside, cell_ids, nest=True))
    land = np.zeros(len(cell_ids), bool)
    for clat, clon, radius in ((48.0, -25.0, 7.0), (30.0, -45.0, 4.0)):  # two islands
        land |= vec.T @ hp.ang2vec(clon, clat, lonlat=True) > np.cos(np.radians(radius))
    # Anomalies: a few warm and cold eddies drifting westwards, plus small-scale noise.
    n_eddies = 12
    e_lon = rng.uniform(-60.0, -10.0, n_eddies)
    e_lat = rng.uniform(20.0, 60.0, n_eddies)
    amp = rng.normal(0.0, 1.5, n_eddies)
    width = rng.uniform(3.0, 7.0, n_eddies)
    truth = np.empty((n_days, len(cell_ids)))
    clouds = np.empty((n_days, len(cell_ids)), bool)
    for day in range(n_days):
        anomaly = np.zeros(len(cell_ids))
        for k in range(n_eddies):
            c = hp.ang2vec(e_lon[k] - 0.3 * day, e_lat[k], lonlat=True)
            dist = np.degrees(np.arccos(np.clip(vec.T @ c, -1.0, 1.0)))
            anomaly += amp[k] * np.exp(-0.5 * (dist / width[k]) ** 2)
        truth[day] = climatology + anomaly + 0.1 * rng.normal(size=len(cell_ids))
        cloud_field = np.zeros(len(cell_ids))
        for _ in range(5):
            c = hp.ang2vec(rng.uniform(-60.0, -10.0), rng.uniform(20.0, 60.0), lonlat=True)
            dist = np.degrees(np.arccos(np.clip(vec.T @ c, -1.0, 1.0)))
            cloud_field += np.exp(-0.5 * (dist / 5.0) ** 2)
        clouds[day] = cloud_field > np.quantile(cloud_field, 0.7)  # 30% of the domain under cloud
    truth[:, land] = np.nan
    observed = np.where(clouds, np.nan, truth)
    return truth, observed, np.where(land, np.nan, climatology), land, clouds & ~land


def write_store(path, nside, cell_ids, truth, observed):
    """An xdggs-convention dataset (dims ``time``, ``cells``) written to a zarr store."""
    coords = {
        "time": np.arange(truth.shape[0]),
        "cell_ids": ("cells", cell_ids, {"grid_name": "healpix", "level": int(np.log2(nside)),
                                         "indexing_scheme": "nested"}),
    }
    ds = xr.Dataset({"sst_obs": (("time", "cells"), observed), "sst": (("time", "cells"), truth)}, coords=coords)
    ds.chunk({"time": 8}).to_zarr(path, mode="w", consolidated=False)  # 8 days per chunk
    return path


def rmse(a, b, where):
    return float(np.sqrt(np.mean((a[where] - b[where]) ** 2)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow", "jax"])
    parser.add_argument("--nside", type=int, default=None, help="default 32 (16 with --quick)")
    parser.add_argument("--days", type=int, default=None, help="days in the record; default 96 (24 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="default 60 (4 with --quick)")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (a few seconds)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--out", default=None, help="folder for ocean_gap_filling.png (skipped when not given)")
    args = parser.parse_args(argv)

    nside = args.nside or (16 if args.quick else 32)
    n_days = args.days or (24 if args.quick else 96)
    epochs = args.epochs or (4 if args.quick else 60)
    cell_ids = domain(nside)
    truth, observed, climatology, land, clouds = synthetic_record(nside, cell_ids, n_days)
    print(f"nside {nside}: {len(cell_ids)} cells ({land.sum()} land), {n_days} days, "
          f"{clouds.mean():.0%} of the ocean under cloud on average")

    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "sst.zarr", nside, cell_ids, truth, observed)
        ds = xr.open_zarr(store, consolidated=False)  # lazy: dask arrays, read batch by batch
        x = ds.sst_obs.expand_dims(channel=1, axis=1)  # (time, channel, cells)
        y = ds.sst.expand_dims(channel=1, axis=1)
        n_train = int(0.75 * n_days)
        train, test = slice(0, n_train), slice(n_train, None)

        net = HealpixUNet.from_grid(x, n_chan_in=1, chanlist=[8, 16] if args.quick else [16, 32, 64],
                                    mask_missing=True, backend=args.backend, seed=0)
        history = net.fit(x.isel(time=train), y.isel(time=train), n_epoch=epochs, batch_size=8, lr=3e-3,
                          normalize=True, verbose=not args.quiet, view_epoch=0)
        filled = net.predict(x.isel(time=test), keep_missing=True)  # a DataArray, land NaN
        filled = filled.compute() if hasattr(filled, "compute") else filled

    pred = filled.isel(channel=0).values
    held_truth, held_clouds = truth[test], clouds[test]
    climate = np.broadcast_to(climatology, held_truth.shape)
    numbers = {
        "train_loss": history["train_loss"],
        "rmse_network": rmse(pred, held_truth, held_clouds),
        "rmse_climatology": rmse(climate, held_truth, held_clouds),
        "land_kept_nan": bool(np.all(np.isnan(pred[:, land]))),
        "ocean_finite": bool(np.all(np.isfinite(pred[:, ~land]))),
        "same_cells": bool(np.array_equal(filled["cell_ids"].values, cell_ids)),
        "grid_attrs": dict(filled["cell_ids"].attrs),
    }
    print(f"RMSE under clouds on {held_truth.shape[0]} held-out days: network {numbers['rmse_network']:.3f} K, "
          f"climatology {numbers['rmse_climatology']:.3f} K")
    print(f"prediction: a {type(filled).__name__} with dims {filled.dims}, land kept as NaN: "
          f"{numbers['land_kept_nan']}, finite over the ocean: {numbers['ocean_finite']}")

    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        from foscat_core import plot

        day = 0  # anomalies (minus the climatology) show what the network had to fill in
        panels = [m - climatology for m in (observed[test][day], held_truth[day], pred[day])]
        fig = plot.show_maps(panels, nside, cell_ids, ncols=3,
                             titles=["observed anomaly (clouds, land)", "true anomaly", "filled anomaly"])
        numbers["figure"] = plot.save(fig, Path(args.out) / "ocean_gap_filling.png", close=True)
        print(f"wrote {numbers['figure']}")
    return numbers


if __name__ == "__main__":
    main()
