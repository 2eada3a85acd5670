"""Weight files of format version 1 (before normalisation was stored) still load."""

import json

import numpy as np
import pytest

from foscat_core.nn import HealpixUNet


def _as_version_1(src, dst):
    with np.load(src) as data:
        contents = {k: data[k] for k in data.files if not k.startswith("data_norm.")}
    header = json.loads(str(contents["__header__"]))
    header["version"] = 1
    for key in ("mask_missing", "nest"):  # configs of version 1 had neither
        header["config"].pop(key, None)
    contents["__header__"] = np.asarray(json.dumps(header))
    np.savez(dst, **contents)


def test_a_version_1_file_loads_with_identity_normalisation(tmp_path):
    net = HealpixUNet(2, 1, [2, 4], backend="numpy", seed=3)
    net.save(tmp_path / "v2.npz")
    _as_version_1(tmp_path / "v2.npz", tmp_path / "v1.npz")
    old = HealpixUNet.load(tmp_path / "v1.npz", backend="numpy")
    assert old.normalization is None and not old.mask_missing
    x = np.random.default_rng(0).normal(size=(2, 1, 48)).astype("float32")
    np.testing.assert_array_equal(old.predict(x), net.predict(x))


def test_a_version_2_file_missing_its_normalisation_is_refused(tmp_path):
    net = HealpixUNet(2, 1, [2, 4], backend="numpy", seed=3)
    net.save(tmp_path / "v2.npz")
    with np.load(tmp_path / "v2.npz") as data:
        contents = {k: data[k] for k in data.files if not k.startswith("data_norm.")}
    np.savez(tmp_path / "broken.npz", **contents)
    with pytest.raises(ValueError, match="missing"):
        HealpixUNet.load(tmp_path / "broken.npz", backend="numpy")
