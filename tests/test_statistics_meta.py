"""Statistics carry their operator: settings recorded, checked in arithmetic, saved and restored."""

import json

import numpy as np
import pytest

from conftest import BACKENDS, to_numpy
from foscat_core.scattering import ScatteringStatistics, funct

NSIDE = 8
NPIX = 12 * NSIDE**2
_OPS = {}


def get_op(backend="numpy", **kw):
    kw = {"KERNELSZ": 3, "NORIENT": 2, **kw}
    key = (backend, tuple(sorted(kw.items())))
    if key not in _OPS:
        _OPS[key] = funct(backend=backend, **kw)
    return _OPS[key]


def maps(batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, NPIX))


def test_settings_record_the_operator_and_the_call():
    op = get_op(NORIENT=4, LAMBDA=1.0, gauge_type="cosmo")
    mask = np.random.default_rng(1).uniform(size=(3, NPIX))
    st = op.eval(maps(), maps(seed=1), mask=mask, Jmax=3, norm="self")
    s = st.settings
    assert {k: s[k] for k in ("nside", "n_cells", "cells_hash", "nest", "KERNELSZ", "NORIENT", "LAMBDA", "gauge_type",
                              "Jmax", "norm", "cross", "mask_rows", "backend", "dtype")} == {
        "nside": NSIDE, "n_cells": NPIX, "cells_hash": "full", "nest": True, "KERNELSZ": 3, "NORIENT": 4,
        "LAMBDA": 1.0, "gauge_type": "cosmo", "Jmax": 3, "norm": "self", "cross": True, "mask_rows": 3,
        "backend": "numpy", "dtype": "float64"}
    assert s["mask_hash"] == op.eval(maps(), mask=mask).settings["mask_hash"]
    assert s["mask_hash"] != op.eval(maps(), mask=mask[::-1]).settings["mask_hash"]
    plain = op.eval(maps())
    assert plain.settings["mask_rows"] == 0 and plain.settings["mask_hash"] is None and not plain.settings["cross"]
    assert plain.settings["Jmax"] == 4  # nside 8 -> 4 -> 2 -> 1
    # results of arithmetic and reductions keep them; to_backend updates backend and dtype
    derived = ((plain - plain.mean_batch()) ** 2).std_batch()
    assert derived.settings == plain.settings
    assert plain.to_backend("numpy", dtype="float32").settings == dict(plain.settings, dtype="float32")


@pytest.mark.parametrize(("kw_a", "kw_b", "eval_b", "message"), [
    ({}, {}, {"Jmax": 3}, "Jmax: 4 vs 3"),
    ({"NORIENT": 4}, {"NORIENT": 1}, {}, "NORIENT: 4 vs 1"),
    ({}, {"KERNELSZ": 5}, {}, "KERNELSZ: 3 vs 5"),
    ({}, {"LAMBDA": 1.5}, {}, "LAMBDA: 1.2 vs 1.5"),
    ({}, {}, {"norm": "self"}, "norm: None vs 'self'"),
])
def test_statistics_of_different_operators_do_not_combine(kw_a, kw_b, eval_b, message):
    a = get_op(**kw_a).eval(maps())
    b = get_op(**kw_b).eval(maps(seed=2), **eval_b)
    for combine in (lambda: a - b, lambda: a + b, lambda: a * b, lambda: a / b):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            combine()


def test_nside_differs():
    a = get_op().eval(maps())
    b = get_op().eval(np.ones(12 * 16**2), Jmax=4)
    with pytest.raises(ValueError, match="nside: 8 vs 16"):
        a - b


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_broadcasting_and_shape_checks(backend):
    op = get_op(backend)
    batch = op.eval(maps(batch=3))
    ref = get_op("numpy").eval(maps(batch=1, seed=3))  # a host reference of batch 1
    for got, want in ((batch - ref, batch.numpy()["S4"] - ref.numpy()["S4"]),
                      (ref - batch, ref.numpy()["S4"] - batch.numpy()["S4"]),
                      (batch - batch.mean_batch(), batch.numpy()["S4"] - batch.numpy()["S4"].mean(0, keepdims=True))):
        np.testing.assert_allclose(got.numpy()["S4"], want, rtol=1e-12)
    with pytest.raises(ValueError, match=r"S0 \(3, 1, 2\) vs \(2, 1, 2\)"):
        batch - op.eval(maps(batch=2))
    masked = op.eval(maps(batch=3), mask=np.ones((2, NPIX)))
    with pytest.raises(ValueError, match=r"S0 \(3, 1, 2\) vs \(3, 2, 2\)"):  # mask rows never broadcast
        batch - masked
    # real |z|**2 against complex: the pair axis is not a shape difference
    assert np.isfinite(to_numpy((batch ** 2 - batch).flatten())).all()


def test_domain_and_mask_may_differ():
    """Statistics of one region or weighting compared with another's: what they are made for."""
    op = get_op()
    rng = np.random.default_rng(4)
    whole = op.eval(maps(batch=1))
    masked = op.eval(maps(batch=1, seed=5), mask=rng.uniform(size=NPIX))
    ids = np.arange(300, 700)
    region = op.eval(rng.normal(size=ids.size), cell_ids=ids, nside=NSIDE, Jmax=3)
    ring = get_op(nest=False).eval(maps(batch=1, seed=6))
    np.testing.assert_allclose((whole - masked).numpy()["S1"], whole.numpy()["S1"] - masked.numpy()["S1"])
    np.testing.assert_allclose((op.eval(maps(batch=1), Jmax=3) - region).numpy()["S2"],
                               op.eval(maps(batch=1), Jmax=3).numpy()["S2"] - region.numpy()["S2"])
    assert (whole - ring).names == whole.names


def test_scalars_and_host_scalars_still_combine(backend_name):
    st = get_op(backend_name).eval(maps())
    n = st.numpy()
    for got, want in ((2.0 * st - 1, 2.0 * n["S1"] - 1), (st / np.float64(2.0), n["S1"] / 2),
                      (np.array(3.0) + st, n["S1"] + 3)):
        np.testing.assert_allclose(got.numpy()["S1"], want, rtol=1e-12)


def test_unknown_settings():
    st = get_op().eval(maps())
    hand = ScatteringStatistics({"S0": st.S0, "S1": st.S1}, (), "numpy", st.j2_j3, st.j1_j2_j3)
    assert hand.settings is None
    assert (hand - hand).names == ("S0", "S1")
    part = ScatteringStatistics({"S0": st.S0, "S1": st.S1}, (), "numpy", st.j2_j3, st.j1_j2_j3)
    known = ScatteringStatistics({"S0": st.S0, "S1": st.S1}, (), "numpy", st.j2_j3, st.j1_j2_j3,
                                 settings=st.settings)
    assert known.settings == st.settings
    with pytest.raises(ValueError, match="unknown operator settings"):
        part - known
    with pytest.raises(ValueError, match="settings"):
        ScatteringStatistics({"S0": st.S0}, (), "numpy", st.j2_j3, st.j1_j2_j3, settings={"nside": 8})


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_restores_backend_dtype_and_settings(backend, tmp_path):
    op = funct(KERNELSZ=3, NORIENT=2, backend=backend, all_type="float32", nest=False)
    st = op.eval(maps().astype(np.float32), mask=np.ones(NPIX), norm="self")
    path = tmp_path / "stats.npz"
    st.save(path)
    back = ScatteringStatistics.load(path)
    assert back.backend.name == backend and back.dtype == "float32"
    assert back.settings == st.settings and back.settings["nest"] is False
    for name, value in st.numpy().items():
        np.testing.assert_array_equal(back.numpy()[name], value)
    assert (back - st).names == st.names  # compatible with what made it
    other = ScatteringStatistics.load(path, backend="numpy")
    assert other.backend.name == "numpy" and other.settings == dict(st.settings, backend="numpy")
    with np.load(path) as data:
        assert json.loads(str(data["settings"]))["Jmax"] == st.settings["Jmax"]


def test_files_of_the_first_format_load_with_unknown_settings(tmp_path):
    st = get_op().eval(maps())
    path = tmp_path / "old.npz"
    arrays = {f"coef_{n}": np.asarray(a) for n, a in st._c.items()}
    np.savez(path, format=np.array("foscat_core.scattering/1"), complex=np.array(sorted(st._complex), dtype="U8"),
             j2_j3=st.j2_j3, j1_j2_j3=st.j1_j2_j3, cross=np.array(False), norm=np.array(""), **arrays)
    old = ScatteringStatistics.load(path, backend="numpy")
    assert old.settings is None
    np.testing.assert_array_equal(old.numpy()["S4"], st.numpy()["S4"])
    assert (old - old).names == st.names
    with pytest.raises(ValueError, match="unknown operator settings"):
        old - st


def test_unreadable_files_are_value_errors(tmp_path):
    st = get_op().eval(maps())
    good = tmp_path / "good.npz"
    st.save(good)
    blob = good.read_bytes()
    cases = {"truncated.npz": blob[: len(blob) // 2], "empty.npz": b"", "random.npz": bytes(range(256)) * 4}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}.* scattering statistics file"):
            ScatteringStatistics.load(tmp_path / name)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"not a scattering statistics file \(an .npz archive\): it is a file starting with b'\\x93NUM'"):
        ScatteringStatistics.load(tmp_path / "plain.npy")
    with pytest.raises(FileNotFoundError):
        ScatteringStatistics.load(tmp_path / "missing.npz")
