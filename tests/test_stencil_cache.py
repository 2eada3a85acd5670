"""The disk and memory cache of stencil tables (foscat_core/stencils/cache.py)."""

import os
import warnings

import numpy as np
import pytest

import foscat_core as fc
from foscat_core.stencils import cache as stencil_cache

NSIDE = 4


def _build(**kw):
    kw.setdefault("gauge_type", "cosmo")
    kw.setdefault("n_gauges", 2)
    st = fc.SphericalStencil(NSIDE, 3, backend="numpy", dtype="float64", **kw)
    return st.index, st.weight


def _files(folder, pattern="*"):
    return sorted(folder.glob(pattern)) if folder.exists() else []


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == b[0].dtype == np.int64
    assert a[1].dtype == b[1].dtype == np.float64


def test_cache_dir_follows_the_variable(cache):
    assert fc.cache_dir() == str(cache)


def test_first_build_writes_one_file_second_loads_it(cache, monkeypatch):
    first = _build()
    files = _files(cache, "*.npz")
    assert len(files) == 1
    assert _files(cache, "*.tmp") == []
    mtime = files[0].stat().st_mtime_ns

    fc.clear_memory_cache()
    # The second build must come from the file: make a fresh computation fail loudly.
    def no_compute(*args, **kwargs):
        raise AssertionError("stencil recomputed although a valid cache file exists")

    monkeypatch.setattr(stencil_cache, "compute_stencil", no_compute)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = _build()
    _assert_same(first, second)
    assert _files(cache, "*.npz") == files
    assert files[0].stat().st_mtime_ns == mtime
    assert _files(cache, "*.tmp") == []


def test_memory_cache_avoids_the_disk(cache, monkeypatch):
    first = _build()
    for f in _files(cache):
        f.unlink()
    second = _build()  # from memory: the file is not needed and not rewritten
    _assert_same(first, second)
    assert _files(cache) == []


def test_tables_are_read_only(cache):
    index, weight = _build()
    with pytest.raises(ValueError):
        index[0, 0, 0, 0] = 1
    with pytest.raises(ValueError):
        weight[0, 0, 0, 0] = 0.5


def test_distinct_configurations_get_distinct_files(cache):
    ids = np.arange(40, 10, -1)
    tables = [
        _build(),
        _build(gauge_type="phi"),
        _build(n_gauges=1),
        _build(cell_ids=ids),
        _build(cell_ids=ids[::-1]),  # same cells, another order: another table
    ]
    assert len(_files(cache, "*.npz")) == len(tables)
    # Explicit full-sky ids are the full sky.
    _build(cell_ids=np.arange(12 * NSIDE**2))
    assert len(_files(cache, "*.npz")) == len(tables)
    fc.clear_memory_cache()
    _assert_same(_build(cell_ids=ids), tables[3])
    _assert_same(_build(cell_ids=ids[::-1]), tables[4])


CORRUPTIONS = {
    "garbage": lambda path: path.write_bytes(b"this is not an npz file \x00\xff" * 10),
    "empty": lambda path: path.write_bytes(b""),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupt_file_is_rebuilt_with_a_warning(cache, how):
    first = _build()
    (path,) = _files(cache, "*.npz")
    CORRUPTIONS[how](path)
    fc.clear_memory_cache()
    with pytest.warns(RuntimeWarning, match="corrupt|rebuild"):
        second = _build()
    _assert_same(first, second)
    # The rebuilt table was written back and is trusted next time, silently.
    fc.clear_memory_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = _build()
    _assert_same(first, third)
    assert _files(cache, "*.npz") == [path]
    assert _files(cache, "*.tmp") == []


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize("how", ["stale_key", "bad_shape", "index_out_of_range", "nan_weight", "missing_array"])
def test_stale_or_inconsistent_file_is_rebuilt(cache, how):
    first = _build()
    (path,) = _files(cache, "*.npz")
    with np.load(path) as data:
        index, weight = data["index"], data["weight"]
    if how == "stale_key":
        _rewrite(path, key=np.array("0" * 40))
    elif how == "bad_shape":
        _rewrite(path, index=index[:, :-1], weight=weight[:, :-1])
    elif how == "index_out_of_range":
        bad = index.copy()
        bad[0, 0, 0, 0] = 10**6
        _rewrite(path, index=bad)
    elif how == "nan_weight":
        bad = weight.copy()
        bad[0, 0, 0, 0] = np.nan
        _rewrite(path, weight=bad)
    else:
        with np.load(path) as data:
            kept = {k: data[k] for k in data.files if k != "weight"}
        with open(path, "wb") as fh:
            np.savez(fh, **kept)
    fc.clear_memory_cache()
    with pytest.warns(RuntimeWarning):
        second = _build()
    _assert_same(first, second)


def test_empty_variable_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FOSCAT_CORE_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fc.clear_memory_cache()
    try:
        assert fc.cache_dir() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            first = _build()
        fc.clear_memory_cache()
        second = _build()
        _assert_same(first, second)
        assert list(tmp_path.rglob("*")) == []
    finally:
        fc.clear_memory_cache()


def test_default_folder_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("FOSCAT_CORE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fc.clear_memory_cache()
    try:
        assert fc.cache_dir() == os.path.join(str(tmp_path / "xdg"), "foscat_core")
        _build()
        assert len(list((tmp_path / "xdg" / "foscat_core").glob("*.npz"))) == 1
    finally:
        fc.clear_memory_cache()


def test_unwritable_cache_warns_and_still_computes(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"not a folder")
    monkeypatch.setenv("FOSCAT_CORE_CACHE_DIR", str(blocker / "sub"))
    fc.clear_memory_cache()
    try:
        with pytest.warns(RuntimeWarning, match="cache"):
            index, weight = _build()
        assert index.shape == weight.shape == (2, 12 * NSIDE**2, 9, 4)
        assert [p.name for p in tmp_path.iterdir()] == ["a_file"]
    finally:
        fc.clear_memory_cache()


def test_no_temporary_files_left_behind(cache):
    for k in (1, 3, 5):
        fc.SphericalStencil(NSIDE, k, backend="numpy")
    ids = np.random.default_rng(0).permutation(12 * NSIDE**2)[:60]
    fc.SphericalStencil(NSIDE, 3, cell_ids=ids, backend="numpy")
    names = [p.name for p in _files(cache)]
    assert len(names) == 4
    assert all(n.startswith("stencil_") and n.endswith(".npz") for n in names), names
    assert _files(cache, "*.tmp") == []


def test_failed_write_leaves_no_partial_file(cache, monkeypatch):
    def broken_savez(fh, **arrays):
        fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.warns(RuntimeWarning, match="cache"):
        index, weight = _build()
    assert index.shape == (2, 12 * NSIDE**2, 9, 4)
    assert _files(cache) == []  # neither a partial .npz nor a .tmp


def test_concurrent_builds_agree_and_leave_one_file(cache):
    from concurrent.futures import ThreadPoolExecutor

    def build(_):
        return _build(cell_ids=np.arange(100, 20, -1))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(build, range(8)))
    for r in results[1:]:
        _assert_same(results[0], r)
    assert len(_files(cache, "*.npz")) == 1
    assert _files(cache, "*.tmp") == []
    fc.clear_memory_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_same(_build(cell_ids=np.arange(100, 20, -1)), results[0])
