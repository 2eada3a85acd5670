"""Quick start: oriented spherical convolution and the NESTED pyramid on a regional domain.

Run:  python examples/quickstart.py [--backend numpy|torch|tensorflow] [--nside 64]
Prints what each step produced; takes a few seconds.
"""

import argparse
import time

import healpy as hp
import numpy as np

import foscat_core as fc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "torch", "tensorflow", "jax"])
    parser.add_argument("--nside", type=int, default=64)
    args = parser.parse_args(argv)

    nside = args.nside
    # A 30 degree disc on the equator: a regional domain, as an ocean modeller would have.
    cell_ids = hp.query_disc(nside, hp.ang2vec(np.pi / 2, 0.0), np.radians(30), nest=True)
    theta, phi = hp.pix2ang(nside, cell_ids, nest=True)
    field = (np.sin(theta) ** 2 * np.cos(2 * phi))[None, None, :].astype("float32")  # (B=1, C=1, N)

    t0 = time.perf_counter()
    stencil = fc.SphericalStencil(nside, 3, cell_ids=cell_ids, backend=args.backend)
    print(f"{stencil!r}\n  tables built in {time.perf_counter() - t0:.2f} s")

    east_minus_west = np.zeros((1, 1, 9), "float32")
    east_minus_west[0, 0, 5], east_minus_west[0, 0, 3] = 1.0, -1.0
    grad = stencil.backend.to_numpy(stencil.conv(field, east_minus_west))[0, 0]
    analytic = -2 * np.sin(theta) * np.sin(2 * phi) * 2 * np.sqrt(np.pi / 3) / nside
    # Away from the disc's border, where stencils are renormalised over the cells present.
    inner = hp.rotator.angdist(np.stack([theta, phi]), [np.pi / 2, 0.0]) < np.radians(27)
    corr = np.corrcoef(grad[inner], analytic[inner])[0, 1]
    print(f"east-minus-west response vs analytic 2*dx*(1/sin(theta)) df/dphi: correlation {corr:.5f} (interior cells)")

    coarse, parent_ids = fc.down(stencil.backend.asarray(field), nside, cell_ids, mode="mean")
    back = stencil.backend.to_numpy(fc.up(coarse, nside // 2, parent_ids, cell_ids))
    print(f"down: {len(cell_ids)} cells -> {len(parent_ids)} parents; "
          f"up(down(x)) differs from x by {np.abs(back - field).max():.2e} at most")


if __name__ == "__main__":
    main()
