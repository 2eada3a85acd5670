"""Files as users expect (issue 11): permissions, fsync, symlinks and folders of the atomic writer;
clear errors for damaged weight files; content checks and unreadable folders of the stencil cache."""

import builtins
import contextlib
import json
import os
import stat
import warnings

import numpy as np
import pytest

import foscat_core as fc
from foscat_core import _files
from foscat_core._files import atomic_write
from foscat_core.demo.report import write_json
from foscat_core.nn import HealpixUNet


@contextlib.contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _tiny_net(backend="numpy"):
    return HealpixUNet(2, 1, [2, 4], backend=backend, seed=3)


def _write_text(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)


# --- the atomic writer ------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, mask):
    with umask(mask):
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        _write_text(tmp_path / "atomic.txt", "x")
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~mask


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o664])
def test_overwriting_keeps_the_mode_of_the_existing_file(tmp_path, mode):
    path = tmp_path / "a.txt"
    path.write_text("old")
    os.chmod(path, mode)
    with umask(0o077):
        _write_text(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == mode


def test_data_and_folder_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else f"fsync {os.fstat(fd).st_size}")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(_files.os, "fsync", fsync)
    monkeypatch.setattr(_files.os, "replace", replace)
    _write_text(tmp_path / "a.txt", "four")
    assert events == ["fsync 4", "rename", "fsync folder"]  # all 4 bytes on disk before the rename


def test_saving_through_a_symlink_writes_the_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target, link = tmp_path / "real" / "w.txt", tmp_path / "links" / "w.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    link.symlink_to(target)
    _write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new" and _mode(target) == 0o640
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == ["w.txt"]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["w.txt"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link, target = tmp_path / "link.txt", tmp_path / "new.txt"
    link.symlink_to(target)
    _write_text(link, "made")
    assert link.is_symlink() and target.read_text() == "made"


def _refuse_creating_in(folder, monkeypatch):
    """Make ``folder`` read-only; as root (which chmod does not stop) refuse creations there too."""
    os.chmod(folder, 0o555)
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.dirname(os.path.abspath(path)) == str(folder):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(_files.os, "open", guarded)


def test_a_read_only_folder_is_named_and_the_file_kept(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "w.txt").write_text("old")
    _refuse_creating_in(folder, monkeypatch)
    try:
        with pytest.raises(PermissionError, match=f"folder '{folder}' does not allow creating files"):
            _write_text(folder / "w.txt", "new")
    finally:
        os.chmod(folder, 0o755)
    assert (folder / "w.txt").read_text() == "old"
    assert sorted(p.name for p in folder.iterdir()) == ["w.txt"]


def test_a_missing_folder_or_a_folder_target_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"folder '{tmp_path / 'nowhere'}' does not exist"):
        _write_text(tmp_path / "nowhere" / "a.txt", "x")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        _write_text(tmp_path, "x")


def test_a_read_only_existing_file_is_refused_like_open(tmp_path, monkeypatch):
    path = tmp_path / "locked.txt"
    path.write_text("keep")
    os.chmod(path, 0o444)
    real_access = os.access
    # root may write anything: answer for the file as an ordinary user would.
    monkeypatch.setattr(_files.os, "access", lambda p, m: False if str(p) == str(path) else real_access(p, m))
    with pytest.raises(PermissionError, match="not writable"):
        _write_text(path, "lost")
    assert path.read_text() == "keep"


def test_every_writer_honours_the_umask(tmp_path, backend_name, monkeypatch):
    monkeypatch.setenv("FOSCAT_CORE_CACHE_DIR", str(tmp_path / "cache"))
    fc.clear_memory_cache()
    try:
        with umask(0o022):
            _tiny_net(backend_name).save(tmp_path / "w.npz")
            write_json(tmp_path / "results.json", {"a": 1})
            fc.SphericalStencil(2, 3, backend=backend_name)
    finally:
        fc.clear_memory_cache()
    written = [tmp_path / "w.npz", tmp_path / "results.json", *sorted((tmp_path / "cache").glob("*.npz"))]
    assert len(written) >= 3  # the network and the stencil each cache a table
    assert {p.name: _mode(p) for p in written} == {p.name: 0o644 for p in written}


# --- loading weight files -----------------------------------------------------------------------

def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def _rewrite_header(path, edit):
    with np.load(path) as data:
        contents = {k: data[k] for k in data.files}
    header = json.loads(str(contents["__header__"]))
    contents["__header__"] = np.asarray(edit(header))
    np.savez(path, **contents)


def _damage(how, path):
    raw = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif how == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif how.startswith("truncated"):
        path.write_bytes(raw[: int(len(raw) * float(how.split("_")[1]))])
    elif how == "central_directory_flipped":
        flipped = bytearray(raw)
        flipped[raw.rindex(b"PK\x01\x02") + 16] ^= 0x10  # the CRC-32 of the last member
        path.write_bytes(bytes(flipped))
    elif how == "data_flipped":
        flipped = bytearray(raw)
        flipped[raw.index(b"head.bias") - 40] ^= 0x01  # inside the array before it
        path.write_bytes(bytes(flipped))
    elif how == "json":
        _rewrite_header(path, lambda h: json.dumps(h)[:-5])
    elif how == "header_list":
        _rewrite_header(path, lambda h: json.dumps([h]))
    elif how == "header_key":
        _rewrite_header(path, lambda h: json.dumps(dict(h, extra=1)))
    elif how == "config_key":
        _rewrite_header(path, lambda h: json.dumps(dict(h, config=dict(h["config"], kernel=5))))
    elif how == "config_missing":
        _rewrite_header(path, lambda h: json.dumps(dict(h, config={k: v for k, v in h["config"].items()
                                                                    if k != "chanlist"})))
    elif how == "version_bool":
        _rewrite_header(path, lambda h: json.dumps(dict(h, version=True)))
    else:
        raise AssertionError(how)


DAMAGES = {"empty": "empty file", "random_bytes": "not a foscat_core network file",
           "npy": "not a foscat_core network file", "truncated_0.5": "damaged", "truncated_0.99": "damaged",
           "central_directory_flipped": "damaged", "data_flipped": "damaged", "json": "not valid JSON",
           "header_list": "must be a JSON object", "header_key": "header keys",
           "config_key": r"unexpected config keys \['kernel'\]", "config_missing": r"config lacks \['chanlist'\]",
           "version_bool": "version True"}


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_damaged_weight_file_is_a_value_error_naming_it(tmp_path, backend_name, how):
    path = tmp_path / "w.npz"
    _tiny_net(backend_name).save(path)
    _damage(how, path)
    before = _open_fds()
    with pytest.raises(ValueError, match=DAMAGES[how]) as err:
        HealpixUNet.load(path, backend=backend_name)
    assert str(path) in str(err.value)
    assert "pickle" not in str(err.value)  # numpy's advice about pickles is not what is wrong
    assert _open_fds() == before  # the file was closed although the traceback is still alive


def test_any_single_bit_flip_is_refused_or_harmless(tmp_path):
    path, broken = tmp_path / "w.npz", tmp_path / "b.npz"
    net = _tiny_net()
    net.save(path)
    expected = {k: np.asarray(v) for k, v in net.named_variables()}
    raw = path.read_bytes()
    outcomes = set()
    for position in range(3, len(raw), 23):
        flipped = bytearray(raw)
        flipped[position] ^= 1 << (position % 8)
        broken.write_bytes(bytes(flipped))
        try:
            loaded = HealpixUNet.load(broken, backend="numpy")
        except ValueError as err:
            assert str(broken) in str(err)
            outcomes.add("refused")
            continue
        for name, value in loaded.named_variables():  # a flip in an unused field changes nothing
            np.testing.assert_array_equal(np.asarray(value), expected[name], err_msg=f"flip at byte {position}")
        outcomes.add("harmless")
    assert outcomes == {"refused", "harmless"}


def test_a_missing_weight_file_is_file_not_found(tmp_path, backend_name):
    with pytest.raises(FileNotFoundError):
        HealpixUNet.load(tmp_path / "nothing.npz", backend=backend_name)


# --- the stencil cache --------------------------------------------------------------------------

def _tables(**kw):
    st = fc.SphericalStencil(4, 3, backend="numpy", dtype="float64", gauge_type="cosmo", n_gauges=2, **kw)
    return np.array(st.index), np.array(st.weight)


def _edit_cache_file(path, edit):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    np.savez(path, **arrays)


def _scale_one_point(a):
    a["weight"][0, 5, 2] *= 1.5  # finite, in range, but the point's weights sum to 1.5


def _negative_pair(a):
    a["weight"][0, 5, 2] = [-0.5, 0.75, 0.75, 0.0]  # sums to 1, each weight below 1, one negative


def _float_index(a):
    a["index"] = a["index"].astype(np.float64) + 0.25


@pytest.mark.parametrize("edit", [_scale_one_point, _negative_pair, _float_index])
def test_a_well_formed_cache_file_with_bad_content_is_rebuilt(cache, edit):
    first = _tables()
    (path,) = cache.glob("*.npz")
    _edit_cache_file(path, edit)
    fc.clear_memory_cache()
    with pytest.warns(RuntimeWarning, match="rebuilding corrupt stencil cache"):
        second = _tables()
    np.testing.assert_array_equal(second[0], first[0])
    np.testing.assert_array_equal(second[1], first[1])
    fc.clear_memory_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file was written back and is trusted
        _tables()


def test_an_unreadable_cache_is_left_alone_with_one_warning(cache, monkeypatch):
    first = _tables()
    (path,) = cache.glob("*.npz")
    content, mtime = path.read_bytes(), path.stat().st_mtime_ns
    fc.clear_memory_cache()
    real_open = builtins.open

    def another_users_folder(file, *args, **kwargs):
        if str(file).startswith(str(cache)):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    with monkeypatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        patch.setattr(builtins, "open", another_users_folder)
        warnings.simplefilter("always")
        second = _tables()
        _tables(cell_ids=np.arange(40, 100))  # another table from the same folder: no second warning
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "cannot read the stencil cache" in messages[0], messages
    assert "corrupt" not in messages[0]
    np.testing.assert_array_equal(second[1], first[1])
    assert [p.name for p in cache.iterdir()] == [path.name]  # nothing written there
    assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime
