"""CSV exports: neutralising formulas, round trips, the wide and long frames, the CLI."""

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.export import (
    error_category_frame,
    neutralise,
    review_events_frame,
    to_csv_bytes,
    write_error_csv,
    write_mislabels_csv,
)
from cifar_mtl.stores.reviews import ReviewStore
from cifar_mtl.runs import load_predictions
from cifar_mtl.synthetic import make_fake_run

ROOT = Path(__file__).resolve().parent.parent

AWKWARD = [
    "plain",
    "comma, inside",
    'say "hi"',
    "line one\nline two",
    "crlf\r\ninside",
    "=HYPERLINK(\"http://x\",\"click\")",
    "+1+2",
    "-2+3",
    "@SUM(A1:A2)",
    "\tstarts with a tab",
    "\rstarts with a carriage return",
    "Ünïcødé 猫 ✓",
    "-5",
    "",
]


@pytest.mark.parametrize(
    "value, text",
    [
        ("=1+1", "'=1+1"),
        ("+x", "'+x"),
        ("-x", "'-x"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("-3", "-3"),
        ("+0.5", "+0.5"),
        ("-1e-4", "-1e-4"),
        ("-1-1", "'-1-1"),
        (-3, "-3"),
        (-0.25, "-0.25"),
        (np.float32(-2.5), "-2.5"),
        (np.int8(-7), "-7"),
        (True, "True"),
        (None, ""),
        (float("nan"), ""),
        (pd.NA, ""),
        (("clutter", "pose"), "clutter; pose"),
        (pd.Timestamp("2024-01-02T03:04:05", tz="UTC"), "2024-01-02T03:04:05+00:00"),
    ],
)
def test_neutralise(value, text):
    assert neutralise(value) == text


def test_csv_round_trip_with_awkward_notes():
    df = pd.DataFrame(
        {
            "index": np.arange(len(AWKWARD)),
            "delta": np.linspace(-1.5, 1.5, len(AWKWARD)),
            "note": AWKWARD,
        }
    )
    data = to_csv_bytes(df)
    expected = [neutralise(v) for v in AWKWARD]
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8", keep_default_na=False)
    assert back["note"].tolist() == expected
    assert back["delta"].tolist() == pytest.approx(df["delta"].tolist())  # still numbers
    assert back["delta"].dtype.kind == "f"
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[0] == ["index", "delta", "note"]
    assert [r[2] for r in rows[1:]] == expected
    # No cell in the file starts a formula.
    assert not any(r[2].startswith(("=", "+", "@", "\t", "\r")) for r in rows[1:])
    assert "'=HYPERLINK" in data.decode("utf-8")


@pytest.fixture
def reviewed(home):
    """A 200-image run `r1` and a review database with tags, notes and verdicts on it."""
    make_fake_run("r1", n=200, seed=2)
    preds = load_predictions("r1")
    store = ReviewStore()
    store.tag("r1", 3, "clutter", "ann")
    store.tag("r1", 3, "pose", "bob")
    store.tag("r1", 8, "colour", "ann")
    store.untag("r1", 8, "colour", "ann")  # leaves image 8 without a current review
    store.set_note("r1", 3, "ann", "=cmd|' /C calc'!A0")
    store.set_note("r1", 3, "bob", 'dark, "blurry"\nsee ship')
    store.set_mislabel("r1", 5, "ann", "confirmed", 4)
    store.set_mislabel("r1", 5, "bob", "unsure")
    store.tag("r2", 6, "clutter", "ann")  # made while reviewing another run
    yield preds, store
    store.close()


def test_error_category_frame(reviewed):
    preds, store = reviewed
    df = error_category_frame(preds, store, "r1")
    assert df["index"].tolist() == [3, 5]
    cats = store.category_names()
    assert list(df.columns[:7]) == ["index", "label", "label_name", "pred", "pred_name", "confidence", "correct"]
    assert list(df.columns[7:7 + len(cats)]) == cats
    row = df.set_index("index").loc[3]
    assert (row["clutter"], row["pose"], row["colour"]) == (1, 1, 0)
    assert row["reviewers"] == "ann; bob"
    assert row["notes"] == "ann: =cmd|' /C calc'!A0 | bob: dark, \"blurry\"\nsee ship"
    assert row["label"] == preds.loc[3, "label"] and row["mislabel_verdict"] == ""
    five = df.set_index("index").loc[5]
    assert five["mislabel_verdict"] == "confirmed; unsure"
    assert five["suggested_label"] == 4 and five["suggested_name"] == "deer"
    assert five["last_review"] == store.current_mislabels()["at"].max()
    assert df[cats].sum().sum() == 2


def test_review_events_frame(reviewed):
    preds, store = reviewed
    df = review_events_frame(preds, store, "r1")
    assert len(df) == 8 and df["id"].is_monotonic_increasing
    assert df["action"].tolist()[:4] == ["add", "add", "add", "remove"]
    assert (df["label"] == preds.set_index("index").loc[df["index"], "label"].to_numpy()).all()
    assert {"kind", "category", "note", "verdict", "suggested_label", "undoes", "label_name"} <= set(df.columns)


def test_write_error_csv_default_path_and_round_trip(reviewed, home):
    preds, store = reviewed
    path = write_error_csv("r1", store=store)
    assert path.parent == home / "exports"
    assert re.fullmatch(r"r1-errors-\d{8}-\d{6}\.csv", path.name)
    back = pd.read_csv(path, keep_default_na=False)
    assert back["index"].tolist() == [3, 5]
    assert back.loc[0, "notes"] == "ann: =cmd|' /C calc'!A0 | bob: dark, \"blurry\"\nsee ship"
    (home / "x").mkdir()
    long_path = write_error_csv("r1", long=True, out=home / "x" / "events.csv")
    assert long_path == home / "x" / "events.csv"
    events = list(csv.DictReader(open(long_path, encoding="utf-8", newline="")))
    assert len(events) == 8 and events[4]["note"] == "'=cmd|' /C calc'!A0"


def test_write_mislabels_csv(home):
    make_fake_run("a", n=100, seed=0)
    make_fake_run("b", n=100, seed=1)
    path = write_mislabels_csv(["a", "b"], top=10)
    assert re.fullmatch(r"a-and-1-more-mislabels-\d{8}-\d{6}\.csv", path.name)
    back = pd.read_csv(path)
    assert back["rank"].tolist() == list(range(1, 11))
    assert back["quality"].is_monotonic_increasing
    assert write_mislabels_csv("a", out=home / "m.csv") == home / "m.csv"
    with pytest.raises(ValueError, match="no run given"):
        write_mislabels_csv([])


def run_cli(home, *args):
    env = {**os.environ, "CIFAR_MTL_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "cifar_mtl", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )


@pytest.mark.slow  # command-line subprocesses
def test_cli_export_and_mislabels(reviewed, home, tmp_path):
    done = run_cli(home, "export", "--run", "r1")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.parent == home / "exports"
    assert pd.read_csv(path)["index"].tolist() == [3, 5]
    out = tmp_path / "long.csv"
    done = run_cli(home, "export", "--run", "r1", "--long", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(out)) == 8
    make_fake_run("r3", n=200, seed=5)
    out = tmp_path / "mis.csv"
    done = run_cli(home, "mislabels", "--run", "r1", "--run", "r3", "--top", "7", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(out)) == 7


@pytest.mark.slow  # command-line subprocesses
def test_cli_compare_prints_intervals_and_mcnemar(home):
    from cifar_mtl.compare import compare_runs
    from cifar_mtl.runs import load_predictions

    make_fake_run("ca", n=300, seed=1)
    make_fake_run("cb", n=300, seed=2)
    c = compare_runs(load_predictions("ca"), load_predictions("cb"))
    done = run_cli(home, "compare", "--run", "ca", "--run", "cb")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"A ca: accuracy {c.accuracy_a:.2%} (95% CI {c.ci_a[0]:.2%}-")
    assert f"cross-group errors {c.cross_group_b}" in lines[1]
    assert f"B fixed {c.n_fixed}, broke {c.n_broken}; McNemar exact p = {c.p_value:.2g}" in lines[2]
    done = run_cli(home, "compare", "--run", "ca")
    assert done.returncode == 2 and "exactly two runs" in done.stderr
    done = run_cli(home, "compare", "--run", "ca", "--run", "gone")
    assert done.returncode == 2 and "no run named 'gone'" in done.stderr


def test_cli_reports_a_missing_run(home):
    done = run_cli(home, "export", "--run", "nope")
    assert done.returncode == 2
    assert "no run named 'nope'" in done.stderr and "python -m cifar_mtl runs" in done.stderr
    assert "predictions.parquet" not in done.stderr
    done = run_cli(home, "mislabels", "--run", "nope", "--top", "0")
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_cli_reports_a_run_without_predictions(home):
    make_fake_run("half", n=20)
    (home / "runs" / "half" / "predictions.parquet").unlink()
    done = run_cli(home, "export", "--run", "half")
    assert done.returncode == 1 and "predictions.parquet is missing" in done.stderr


def test_an_out_file_needs_an_existing_folder(home, tmp_path):
    make_fake_run("a", n=50)
    for write in (write_error_csv, write_mislabels_csv):
        with pytest.raises(ValueError, match="does not exist; create it first"):
            write("a", out=tmp_path / "missing" / "x.csv")
        with pytest.raises(ValueError, match="is a folder"):
            write("a", out=tmp_path)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "plain").write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        write_error_csv("a", out=tmp_path / "plain" / "x.csv")
    # The home's own exports folder is made when missing, named or not.
    assert write_error_csv("a", out=home / "exports" / "named.csv").is_file()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_exports_get_the_users_file_mode(home, tmp_path, umask, mode):
    make_fake_run("a", n=50)
    old = os.umask(umask)
    try:
        paths = [write_error_csv("a"), write_mislabels_csv("a"), write_error_csv("a", out=tmp_path / "e.csv")]
        paths.append(write_error_csv("a", out=tmp_path / "e.csv"))  # replacing a file gives the same mode
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [mode] * 4
    assert not list(tmp_path.glob(".*.tmp")) and not list((home / "exports").glob(".*.tmp"))


def test_an_unwritable_folder_is_one_clear_error(home):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, a folder where not even root can create files")
    make_fake_run("a", n=50)
    with pytest.raises(ValueError, match=r"cannot write /proc/x\.csv: .*choose a file in a folder you can write to"):
        write_error_csv("a", out="/proc/x.csv")
