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
from cifar_mtl.reviews import ReviewStore
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
    assert done.returncode == 1 and "gone" in done.stderr


def test_cli_reports_a_missing_run(home):
    done = run_cli(home, "export", "--run", "nope")
    assert done.returncode == 1
    assert "nope" in done.stderr and "predictions.parquet is missing" in done.stderr
    done = run_cli(home, "mislabels", "--run", "nope", "--top", "0")
    assert done.returncode == 1 and "error:" in done.stderr


def test_whole_column_neutralising_matches_neutralise():
    n = len(AWKWARD) + 1
    df = pd.DataFrame(
        {
            "note": AWKWARD + [None],
            "mixed": [("a", "b"), 3, "=x", None] + ["-1"] * (n - 4),
            "at": pd.to_datetime(["2024-01-02T03:04:05.123456", None] * n, utc=True)[:n],
        }
    )
    rows = list(csv.reader(io.StringIO(to_csv_bytes(df).decode("utf-8"), newline="")))[1:]
    for k, row in enumerate(rows):
        assert row == [neutralise(df[c][k]) for c in df.columns]
    assert rows[0][2] == "2024-01-02T03:04:05.123456+00:00" and rows[1][2] == ""


def test_a_run_without_reviews_exports_an_empty_table(home):
    make_fake_run("quiet", home, n=50)
    frame = error_category_frame(load_predictions("quiet"), ReviewStore(), "quiet")
    assert len(frame) == 0 and "last_review" in frame.columns
    text = to_csv_bytes(frame).decode("utf-8")
    assert text.splitlines()[0].startswith("index,")
