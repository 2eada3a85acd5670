"""foscat_core.plot: rasterised HEALPix maps, statistics, loss curves and atomic PNG output."""

import os
import subprocess
import sys

import healpy as hp
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from foscat_core import plot  # noqa: E402
from foscat_core.plotting.raster import mollweide_forward, mollweide_grid  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NSIDE = 8
NPIX = 12 * NSIDE * NSIDE


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _image(fig, panel=0):
    """The masked raster of a panel's AxesImage."""
    images = [im for ax in fig.axes for im in ax.images]
    return np.ma.masked_invalid(np.ma.asarray(images[panel].get_array()))


def _z(nside=NSIDE):
    return hp.pix2vec(nside, np.arange(12 * nside * nside), nest=True)[2]


def test_foscat_core_imports_without_matplotlib():
    # (healpy itself imports matplotlib when it is installed; foscat_core must not need it)
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import foscat_core, foscat_core.scattering\n"
            "print('foscat_core.plotting' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_message():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "try:\n    from foscat_core import plot\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'foscat_core[plot]'" in out.stdout


@pytest.mark.parametrize("projection", ["auto", "mollweide"])
def test_full_sky_mollweide_is_filled_inside_the_ellipse(projection):
    fig = plot.show_map(np.arange(NPIX, dtype=float), NSIDE, projection=projection, title="index", unit="u")
    assert isinstance(fig, matplotlib.figure.Figure)
    img = _image(fig)
    ny, nx = img.shape
    assert (ny, nx) == (400, 800)
    x = (np.arange(nx) + 0.5) / nx * 2 - 1
    y = 1 - (np.arange(ny) + 0.5) / ny * 2
    r2 = x[None, :] ** 2 + y[:, None] ** 2
    assert not np.any(img.mask[r2 <= 1.0]), "every pixel inside the ellipse shows data"
    assert np.all(img.mask[r2 > 1.0]), "outside the ellipse is blank"


def test_full_sky_values_placed_north_up():
    img = _image(plot.show_map(_z(), NSIDE))
    rows = img.mean(axis=1)  # masked mean per row
    assert rows[:20].min() > 0.8 and rows[-20:].max() < -0.8
    assert np.corrcoef(np.arange(rows.size), rows.filled(np.nan))[0, 1] < -0.99  # decreasing from top to bottom


def test_full_sky_east_to_the_right():
    # a map equal to sin(phi): positive on the eastern half (phi in (0, pi)) -> right of the centre
    theta, phi = hp.pix2ang(NSIDE, np.arange(NPIX), nest=True)
    img = _image(plot.show_map(np.sin(phi), NSIDE))
    equator = img[img.shape[0] // 2]
    nx = equator.size
    assert equator[nx // 2 + nx // 8] > 0.5 and equator[nx // 2 - nx // 8] < -0.5


def test_full_sky_given_as_permuted_cell_ids():
    ids = np.random.default_rng(0).permutation(NPIX)
    z = _z()
    a = _image(plot.show_map(z[ids], NSIDE, ids, projection="auto"))
    b = _image(plot.show_map(z, NSIDE))
    np.testing.assert_array_equal(a.filled(np.nan), b.filled(np.nan))


def test_mollweide_grid_round_trip():
    theta, phi, inside, _ = mollweide_grid(200)
    lon = np.where(phi > np.pi, phi - 2 * np.pi, phi)
    x, y = mollweide_forward(lon[inside], np.pi / 2 - theta[inside])
    xs = ((np.arange(200) + 0.5) / 200 * 2 - 1)[None, :].repeat(100, 0)[inside] * 2
    ys = (1 - (np.arange(100) + 0.5) / 100 * 2)[:, None].repeat(200, 1)[inside]
    np.testing.assert_allclose(x, xs, atol=1e-6)
    np.testing.assert_allclose(y, ys, atol=1e-9)


def _region():
    return np.arange(4 * 64, 5 * 64)  # base pixel 4: on the equator around phi = 0


@pytest.mark.parametrize("projection", ["auto", "gnomonic"])
def test_regional_gnomonic_shows_data_inside_blank_outside(projection):
    ids = _region()
    values = np.arange(ids.size, dtype=float)
    fig = plot.show_map(values, NSIDE, ids, projection=projection)
    img = _image(fig)
    assert img.shape == (500, 500)
    # centre of the view: inside the region; corners: outside (the base pixel is a diamond)
    c = img.shape[0] // 2
    assert not img.mask[c, c]
    assert img.mask[0, 0] and img.mask[0, -1] and img.mask[-1, 0] and img.mask[-1, -1]
    inside = 1.0 - img.mask.mean()
    assert 0.2 < inside < 0.9
    # the blank pixels are exactly those whose cell is not in the region
    assert set(np.unique(img.compressed())) <= set(values)
    assert img.compressed().min() == 0 and img.compressed().max() == 63
    # north up: nested index 63 (north corner) at the top, 0 (south corner) at the bottom
    col = img[:, c].compressed()
    assert col[0] > col[-1]


def test_regional_mollweide_blank_outside_the_region():
    ids = _region()
    theta, phi = hp.pix2ang(NSIDE, ids, nest=True)
    img = _image(plot.show_map(np.cos(theta), NSIDE, ids, projection="mollweide"))
    finite = ~img.mask
    assert 0.0 < finite.mean() < 1 / 12 * 0.8 + 0.02  # about 1/12 of the ellipse area, pi/8 of the box
    # region around lon 0: data near the image centre only
    ny, nx = img.shape
    cols = np.where(finite.any(axis=0))[0]
    assert cols.min() > nx * 0.3 and cols.max() < nx * 0.7


def test_large_region_auto_uses_mollweide():
    ids = np.arange(6 * 64)  # half the sky
    img = _image(plot.show_map(np.ones(ids.size), NSIDE, ids))
    assert img.shape == (400, 800)


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    z = _z()
    a = _image(plot.show_map(torch.tensor(z, requires_grad=True), NSIDE, xsize=100))
    b = _image(plot.show_map(z, NSIDE, xsize=100))
    np.testing.assert_array_equal(a.filled(np.nan), b.filled(np.nan))


def test_draws_into_given_axes():
    fig, axes = plt.subplots(1, 2)
    out = plot.show_map(_z(), NSIDE, ax=axes[1], colorbar=False, xsize=64)
    assert out is fig and len(axes[1].images) == 1 and len(axes[0].images) == 0


def test_show_maps_shared_scale():
    z = _z()
    maps = [z, 2 * z, z - 1, 0.1 * z]
    fig = plot.show_maps(maps, NSIDE, titles=["input", "truth", "prediction", "residual"], suptitle="s",
                         xsize=100)
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 4
    limits = {im.get_clim() for im in images}
    assert len(limits) == 1
    lo, hi = limits.pop()
    assert lo == pytest.approx(min(m.min() for m in maps)) and hi == pytest.approx(max(m.max() for m in maps))
    assert sum(1 for ax in fig.axes if ax.get_label() == "<colorbar>") == 1


def test_show_maps_array_and_separate_scales():
    ids = _region()
    maps = np.stack([np.arange(64.0), -np.arange(64.0) * 3])
    fig = plot.show_maps(maps, NSIDE, ids, shared_scale=False, ncols=1, xsize=80)
    images = [im for ax in fig.axes for im in ax.images]
    assert images[0].get_clim() != images[1].get_clim()
    assert sum(1 for ax in fig.axes if ax.get_label() == "<colorbar>") == 2


@pytest.fixture(scope="module")
def stats_pair():
    from foscat_core.scattering import funct
    op = funct(KERNELSZ=3, NORIENT=4, backend="numpy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, NPIX))
    y = np.cumsum(rng.normal(size=(1, NPIX)), axis=1) / 10
    return op.eval(x), op.eval(y), op.eval(x, y=x[::-1].copy())


def test_show_statistics(stats_pair):
    s, ref, _ = stats_pair
    fig = plot.show_statistics(s, label="synthesised", reference=ref, reference_label="target")
    assert len(fig.axes) == 4
    ax_s1 = fig.axes[0]
    assert ax_s1.get_yscale() == "log"
    # 4 orientations x (stats + reference dashed)
    assert len(ax_s1.lines) == 8
    assert sum(1 for line in ax_s1.lines if line.get_linestyle() == "--") == 4
    # S1 lines carry the batch mean of the first mask row
    np.testing.assert_allclose(ax_s1.lines[0].get_ydata(), np.asarray(s.S1).mean(axis=0)[0][:, 0])
    # S3 / S4 summaries: one point per scale pair / triplet
    assert len(fig.axes[2].lines[0].get_xdata()) == len(s.j2_j3)
    assert len(fig.axes[3].lines[0].get_xdata()) == len(s.j1_j2_j3)


def test_show_statistics_overlay_and_cross(stats_pair):
    s, ref, cross = stats_pair
    fig = plot.show_statistics(s, label="a")
    again = plot.show_statistics(ref, label="b", ax_or_fig=fig)
    assert again is fig and len(fig.axes) == 4 and len(fig.axes[0].lines) == 8
    fig2 = plot.show_statistics(cross, label="cross")  # complex S2 -> modulus
    assert np.all(np.isfinite(fig2.axes[1].lines[0].get_ydata()))


def test_show_statistics_bad_input():
    with pytest.raises(TypeError, match="stats"):
        plot.show_statistics(np.zeros(3))
    with pytest.raises(ValueError, match="ax_or_fig"):
        plot.show_statistics(_FakeStats(), ax_or_fig=plt.subplots(1, 2)[1])


class _FakeStats:
    j2_j3 = np.zeros((0, 2), np.int64)
    j1_j2_j3 = np.zeros((0, 3), np.int64)
    norm = None

    def numpy(self):
        return {"S1": np.ones((1, 1, 2, 2)), "S2": np.ones((1, 1, 2, 2))}


def test_show_history():
    fig = plot.show_history({"train_loss": [1.0, 0.5, 0.2], "val_loss": []}, title="fit")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 1
    fig = plot.show_history(np.geomspace(10, 1e-3, 200))
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].lines[0].get_xdata()) == 200
    with pytest.raises(ValueError, match="history"):
        plot.show_history({"lr": [1.0]})
    with pytest.raises(ValueError, match="history"):
        plot.show_history(np.ones((2, 3)))


def test_save_writes_png_atomically(tmp_path):
    fig = plot.show_map(_z(), NSIDE, xsize=64)
    path = tmp_path / "map.png"
    path.write_bytes(b"old")
    out = plot.save(fig, path)
    assert out == str(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(os.listdir(tmp_path)) == ["map.png"], "no temporary file left behind"
    with pytest.raises(ValueError, match="path"):
        plot.save(fig, tmp_path / "missing" / "x.png")


@pytest.mark.parametrize("kwargs, match", [
    (dict(values=np.zeros(100), nside=NSIDE), "values"),
    (dict(values=np.zeros(NPIX), nside=6), "nside"),
    (dict(values=np.zeros(10), nside=NSIDE, cell_ids=np.arange(11)), "values"),
    (dict(values=np.zeros(10), nside=NSIDE, cell_ids=np.arange(10) + NPIX), "cell_ids"),
    (dict(values=np.zeros((2, NPIX)), nside=NSIDE), "values"),
    (dict(values=np.zeros(NPIX), nside=NSIDE, projection="orthographic"), "projection"),
    (dict(values=np.zeros(NPIX), nside=NSIDE, xsize=3), "xsize"),
])
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot.show_map(**kwargs)


def test_show_maps_bad_input():
    with pytest.raises(ValueError, match="titles"):
        plot.show_maps([_z(), _z()], NSIDE, titles=["one"])
    with pytest.raises(ValueError, match="maps"):
        plot.show_maps([], NSIDE)
    with pytest.raises(ValueError, match=r"maps\[1\]"):
        plot.show_maps([_z(), np.zeros(5)], NSIDE)


def test_save_can_close_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig = plot.show_map(np.arange(48.0), nside=2)
    plot.save(fig, tmp_path / "kept.png")
    assert plt.fignum_exists(fig.number)
    plot.save(fig, tmp_path / "closed.png", close=True)
    assert not plt.fignum_exists(fig.number)
    assert (tmp_path / "closed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
