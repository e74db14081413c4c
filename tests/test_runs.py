import json
import os
from pathlib import Path

import pandas as pd
import pytest

from cifar_mtl import runs
from cifar_mtl.synthetic import make_fake_run


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-lead", "a b", "x" * 65, "a;rm", "$(id)", ".hidden"])
def test_invalid_run_ids(bad):
    with pytest.raises(ValueError, match="invalid run id"):
        runs.run_dir(bad)


def test_valid_run_ids_and_new_ids():
    assert runs.validate_run_id("A.b_c-9") == "A.b_c-9"
    assert runs.validate_run_id(runs.new_run_id("my name/../x"))


def test_home_follows_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_MTL_HOME", str(tmp_path))
    assert runs.home() == tmp_path
    monkeypatch.delenv("CIFAR_MTL_HOME")
    assert runs.home() == Path.cwd() / "artifacts"


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    runs.atomic_write_json(tmp_path / "a.json", {"x": 1})
    runs.atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert os.listdir(tmp_path) == ["a.json"]


def test_bad_runs_are_reported_and_others_still_load(home):
    make_fake_run("good", home, n=200)
    make_fake_run("corrupt", home, n=200)
    (runs.run_dir("corrupt") / "predictions.parquet").write_bytes(b"not parquet")
    make_fake_run("partial", home, n=200)
    (runs.run_dir("partial") / "metrics.json").unlink()
    make_fake_run("badjson", home, n=200)
    (runs.run_dir("badjson") / "config.json").write_text("{")
    (home / "runs" / "not a run").mkdir()
    table = runs.list_runs().set_index("run_id")
    assert set(table.index) == {"good", "corrupt", "partial", "badjson"}
    assert table.loc["good", "complete"] and pd.isna(table.loc["good", "problem"])
    assert not table.loc["partial", "complete"]
    assert "config.json is not valid JSON" in table.loc["badjson", "problem"]
    assert len(runs.load_predictions("good")) == 200
    with pytest.raises(runs.RunError, match="'corrupt': predictions.parquet cannot be read"):
        runs.load_predictions("corrupt")
    with pytest.raises(runs.RunError, match="not complete: metrics.json is missing"):
        runs.load_metrics("partial")
    (runs.run_dir("good") / "predictions.parquet").unlink()
    with pytest.raises(runs.RunError, match="'good': predictions.parquet is missing"):
        runs.load_predictions("good")


@pytest.mark.parametrize("loader", ["load_predictions", "load_metrics", "load_config", "load_status", "load_history"])
def test_unknown_run_says_no_such_run_and_how_to_list_them(home, loader):
    make_fake_run("real", home, n=20)
    with pytest.raises(runs.RunError) as err:
        getattr(runs, loader)("nope")
    text = str(err.value)
    assert f"no run named 'nope' exists under {home / 'runs'}" in text
    assert "python -m cifar_mtl runs` lists them" in text and "missing" not in text


def test_write_status_keeps_fields(tmp_path):
    runs.write_status(tmp_path, "running", pid=12)
    s = runs.write_status(tmp_path, "failed", error="boom")
    assert s["pid"] == 12 and s["error"] == "boom" and s["finished_at"]
    with pytest.raises(ValueError, match="unknown state"):
        runs.write_status(tmp_path, "exploded")
