"""``python -m foscat_core demo``: ``--out`` and ``--nside`` are checked before any work (issue 11)."""

import subprocess
import sys
import tempfile

import pytest

import foscat_core.demo
from foscat_core.__main__ import MAX_DEMO_NSIDE, main
from foscat_core.demo import DemoConfig, pipeline, run_demo


@pytest.fixture
def no_run(monkeypatch):
    """The demo itself must not start: a bad argument is a usage error before it."""
    calls = []
    monkeypatch.setattr(foscat_core.demo, "run_demo", lambda cfg, out, make_figures: calls.append(out))
    return calls


def _usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--quick", "--quiet", "--backend", "torch", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "Traceback" not in err
    return err


def test_an_existing_file_as_out_is_a_usage_error(tmp_path, no_run, capsys):
    (tmp_path / "results").write_text("mine")
    err = _usage_error(["--out", str(tmp_path / "results")], capsys)
    assert "--out must be a folder" in err and "is an existing file" in err
    assert (tmp_path / "results").read_text() == "mine" and no_run == []


@pytest.mark.parametrize("where", ["under_a_file", "nul_byte"])
def test_an_impossible_out_path_is_a_usage_error(tmp_path, no_run, capsys, where):
    (tmp_path / "a_file").write_text("x")
    out = str(tmp_path / "a_file" / "sub") if where == "under_a_file" else str(tmp_path / "bad\0name")
    err = _usage_error(["--out", out], capsys)
    assert "--out" in err and "cannot hold the demo's results" in err
    assert no_run == []


def test_a_read_only_out_folder_is_a_usage_error(tmp_path, no_run, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    real = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):  # root ignores chmod: refuse as the file system would
        if dir is not None and str(dir) == str(out):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    err = _usage_error(["--out", str(out)], capsys)
    assert f"--out '{out}' cannot hold the demo's results" in err and "Permission denied" in err
    assert no_run == []


def test_an_output_name_taken_by_a_folder_is_a_usage_error(tmp_path, no_run, capsys):
    (tmp_path / "out" / "results.json").mkdir(parents=True)
    err = _usage_error(["--out", str(tmp_path / "out")], capsys)
    assert "results.json which cannot be overwritten" in err and no_run == []


def test_a_good_out_folder_is_created_and_the_demo_runs(tmp_path, no_run):
    out = tmp_path / "new" / "demo"
    main(["demo", "--quick", "--quiet", "--backend", "torch", "--out", str(out)])
    assert out.is_dir() and no_run == [str(out)]
    (out / "results.json").write_text("{}")  # a previous run's results are simply replaced
    main(["demo", "--quick", "--quiet", "--backend", "torch", "--out", str(out)])
    assert no_run == [str(out)] * 2


@pytest.mark.parametrize("nside", [2 * MAX_DEMO_NSIDE, 2**29])
def test_nside_is_capped(nside, no_run, capsys, tmp_path):
    err = _usage_error(["--nside", str(nside), "--out", str(tmp_path)], capsys)
    assert f"--nside must be at most {MAX_DEMO_NSIDE}" in err and no_run == []


def test_help_states_the_nside_cap():
    text = subprocess.run([sys.executable, "-m", "foscat_core", "demo", "--help"], capture_output=True, text=True,
                          check=True).stdout
    assert f"from 8 to {MAX_DEMO_NSIDE}" in " ".join(text.split())


def test_run_demo_checks_out_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "taken").write_text("x")

    def no_work(cfg):
        raise AssertionError("the demo started although out is unusable")

    monkeypatch.setattr(foscat_core.demo, "make_data", no_work)
    monkeypatch.setattr(pipeline, "make_data", no_work)
    with pytest.raises(ValueError, match="out must be a folder"):
        run_demo(DemoConfig.quick(), out=tmp_path / "taken")
