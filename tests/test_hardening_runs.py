"""Issue 13: one damaged file in one run folder never hides the other runs.

Each case breaks one file of one run ("bad") beside a sound run ("good"): wrong
types, the wrong JSON shape, binary garbage, nesting too deep to parse, a file that
cannot be read (a folder in its place), and for the predictions a footer that does
not match the metrics. `list_runs` must list both, with the bad run's problem naming
the file; the loaders must raise RunError, never TypeError or RecursionError.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from cifar_mtl import runs
from cifar_mtl.synthetic import make_fake_run

DEEP_LIST = "[" * 200_000 + "]" * 200_000
DEEP_OBJECT = '{"a": ' * 100_000 + "1" + "}" * 100_000
GARBAGE = bytes(range(256)) * 4


def _merge(name, extra):
    def damage(folder):
        data = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps({**data, **extra}))
    return damage


def _write(name, content):
    def damage(folder):
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return damage


def _folder_instead(name):
    def damage(folder):
        path = folder / name
        if path.exists():
            path.unlink()
        path.mkdir()  # reading it raises IsADirectoryError, like an unreadable file
    return damage


def _short_predictions(folder):
    table = pd.read_parquet(folder / runs.PREDICTIONS_FILE)
    table.head(10).to_parquet(folder / runs.PREDICTIONS_FILE, index=False)


def _predictions_without(column):
    def damage(folder):
        table = pd.read_parquet(folder / runs.PREDICTIONS_FILE)
        table.drop(columns=[column]).to_parquet(folder / runs.PREDICTIONS_FILE, index=False)
    return damage


# (case, damage, file named in the problem, whether the run still counts as complete)
CASES = [
    ("config string epochs", _merge("config.json", {"finetune_epochs": "3"}), "config.json: finetune_epochs is '3'", True),
    ("config list", _write("config.json", "[1, 2]"), "config.json should hold a JSON object", True),
    ("config garbage", _write("config.json", GARBAGE), "config.json is not text", True),
    ("config deep", _write("config.json", DEEP_LIST), "config.json is nested too deeply", True),
    ("config unreadable", _folder_instead("config.json"), "config.json is not valid JSON", True),
    ("config smoothing text", _merge("config.json", {"label_smoothing": "lots"}), "label_smoothing is 'lots'", True),
    ("status state number", _merge("status.json", {"state": 5}), "status.json: state is 5", True),
    ("status unknown state", _merge("status.json", {"state": "exploded"}), "state 'exploded' is not one of", True),
    ("status start number", _merge("status.json", {"started_at": 12345}), "status.json: started_at is 12345", True),
    ("status list", _write("status.json", "[]"), "status.json should hold a JSON object", True),
    ("status garbage", _write("status.json", GARBAGE), "status.json is not text", True),
    ("status deep", _write("status.json", DEEP_OBJECT), "status.json is nested too deeply", True),
    ("status unreadable", _folder_instead("status.json"), "status.json is not valid JSON", True),
    ("metrics accuracy text", _merge("metrics.json", {"accuracy": "high"}), "metrics.json: accuracy is 'high'", False),
    ("metrics accuracy range", _merge("metrics.json", {"accuracy": 7}), "accuracy 7 is outside 0..1", False),
    ("metrics n_test text", _merge("metrics.json", {"n_test": "200"}), "metrics.json: n_test is '200'", False),
    ("metrics list", _write("metrics.json", "[0.9]"), "metrics.json should hold a JSON object", False),
    ("metrics garbage", _write("metrics.json", GARBAGE), "metrics.json is not text", False),
    ("metrics deep", _write("metrics.json", DEEP_LIST), "metrics.json is nested too deeply", False),
    ("metrics unreadable", _folder_instead("metrics.json"), "metrics.json is not valid JSON", False),
    ("history garbage", _write("history.csv", GARBAGE), "history.csv", True),
    ("history foreign", _write("history.csv", "a,b\n1,2\n"), "history.csv is damaged", True),
    ("history unreadable", _folder_instead("history.csv"), "history.csv cannot be read", True),
    ("progress list", _write("progress.json", "[1]"), "progress.json cannot be read or is not a JSON object", True),
    ("progress garbage", _write("progress.json", GARBAGE), "progress.json cannot be read", True),
    ("progress deep", _write("progress.json", DEEP_OBJECT), "progress.json cannot be read", True),
    ("progress unreadable", _folder_instead("progress.json"), "progress.json cannot be read", True),
    ("predictions garbage", _write("predictions.parquet", b"PAR1" + GARBAGE), "predictions.parquet cannot be read as parquet", False),
    ("predictions short", _short_predictions, "predictions.parquet has 10 rows where metrics.json says n_test 200", False),
    ("predictions column", _predictions_without("confidence"), "predictions.parquet is missing columns ['confidence']", False),
    ("predictions unreadable", _folder_instead("predictions.parquet"), "predictions.parquet cannot be read", False),
]


@pytest.mark.parametrize("case, damage, named, complete", CASES, ids=[c[0] for c in CASES])
def test_a_damaged_file_is_listed_with_its_problem_and_other_runs_still_load(home, case, damage, named, complete):
    make_fake_run("good", home, n=200)
    folder = make_fake_run("bad", home, n=200)
    runs.atomic_write_json(folder / runs.PROGRESS_FILE, {"phase": "predict", "step": 1, "steps": 1})
    damage(folder)
    table = runs.list_runs(home).set_index("run_id")
    assert set(table.index) == {"good", "bad"}
    assert table.loc["good", "complete"] and pd.isna(table.loc["good", "problem"])
    assert named in table.loc["bad", "problem"] and "'bad'" in table.loc["bad", "problem"]
    assert bool(table.loc["bad", "complete"]) == complete
    assert len(runs.load_predictions("good", home)) == 200


@pytest.mark.parametrize("name", ["config.json", "status.json", "metrics.json"])
@pytest.mark.parametrize("content", [DEEP_LIST, DEEP_OBJECT, GARBAGE, "[]"], ids=["deep-list", "deep-object", "garbage", "list"])
def test_loaders_raise_run_errors_for_damaged_json(home, name, content):
    folder = make_fake_run("bad", home, n=20)
    _write(name, content)(folder)
    loader = {"config.json": runs.load_config, "status.json": runs.load_status, "metrics.json": runs.load_metrics}[name]
    with pytest.raises(runs.RunError, match=f"run 'bad': {name}"):
        loader("bad", home)


def test_progress_that_is_not_an_object_reads_as_none(home):
    folder = make_fake_run("bad", home, n=20)
    for content in ("[1, 2]", DEEP_OBJECT, GARBAGE):
        _write("progress.json", content)(folder)
        assert runs.load_progress("bad", home) is None


def test_predictions_of_the_wrong_length_are_refused_when_loaded(home):
    folder = make_fake_run("short", home, n=200)
    _short_predictions(folder)
    with pytest.raises(runs.RunError, match="'short': predictions.parquet has 10 rows; the test set has 200 images"):
        runs.load_predictions("short", home)


def test_runs_command_lists_a_run_with_a_string_epoch_count(home):
    """Issue 13 #1 as reported: `python -m cifar_mtl runs` exited 1 with a TypeError."""
    make_fake_run("good", home, n=20)
    _merge("config.json", {"finetune_epochs": "3"})(make_fake_run("bad", home, n=20))
    env = dict(os.environ, CIFAR_MTL_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "cifar_mtl", "runs"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "good" in result.stdout and "finetune_epochs is '3'" in result.stdout
