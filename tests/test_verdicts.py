"""Verdicts from a file (cifar_mtl.verdicts) and the command line's review loop:
mislabels --out, a filled-in verdict column, verdicts import, verdicts list, labels build."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.export import to_csv_bytes
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.mislabels import rank_train_mislabels
from cifar_mtl.stores.reviews import ReviewStore
from cifar_mtl.verdicts import VerdictFileError, read_verdicts, record_verdicts, run_labels
from tests.label_loop_fixture import write_train_predictions

N_TRAIN = 500
SUSPECTS = np.array([11, 42, 77, 123, 321])


@pytest.fixture
def home(tmp_path):
    """An artifacts home with cross-validation run "cv" over 500 training images (labels = index mod 10)."""
    folder = tmp_path / "runs" / "cv"
    folder.mkdir(parents=True)
    write_train_predictions(folder, np.arange(N_TRAIN) % 10, SUSPECTS)
    return tmp_path


def ranking_csv(home, top=5) -> pd.DataFrame:
    """The top of the run's ranking as `mislabels --out` writes it, read back as text cells."""
    from cifar_mtl.mislabels import load_train_predictions

    ranked = rank_train_mislabels(load_train_predictions("cv", home), top=top)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return pd.read_csv(pd.io.common.BytesIO(to_csv_bytes(ranked)), dtype=str, keep_default_na=False)


def as_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def test_a_filled_ranking_gives_one_verdict_per_judged_row(home):
    labels = run_labels("cv", "train", home)
    assert len(labels) == N_TRAIN and labels[42] == 2
    table = ranking_csv(home)
    assert sorted(table["index"].astype(int)) == sorted(SUSPECTS)
    table["verdict"] = ["confirmed", "Confirmed ", "rejected", "unsure", ""]
    table["new_label"] = ["", "dog", "cat", "", ""]  # a rejection's label cell says nothing
    got = read_verdicts(as_bytes(table), labels)
    assert got["verdict"].tolist() == ["confirmed", "confirmed", "rejected", "unsure"]
    first = int(table["index"][0])
    assert got["label"][0] == (labels[first] + 1) % 10  # the ranking's suggested class
    assert got["label"][1] == CLASS_NAMES.index("dog") and pd.isna(got["label"][2]) and pd.isna(got["label"][3])
    assert got["line"].tolist() == [2, 3, 4, 5]


def test_bad_rows_are_named_by_line_and_nothing_is_returned(home):
    labels = run_labels("cv", "train", home)
    table = pd.DataFrame({
        "index": ["3", "9999", "x", "4", "5", "6", "7"],
        "verdict": ["maybe", "rejected", "rejected", "confirmed", "confirmed", "confirmed", "rejected"],
        "new_label": ["", "", "", "", "4", "horse?", ""],
    })
    with pytest.raises(VerdictFileError) as err:
        read_verdicts(as_bytes(table), labels)
    text = str(err.value)
    assert text.startswith("5 row(s) cannot be saved, so none was")
    assert "line 2: verdict 'maybe' is not one of confirmed, rejected, unsure" in text
    assert "line 3: image 9999 is not among the run's 500 images" in text
    assert "line 4: image index 'x' is not a number" in text
    assert "line 5: image 4 is confirmed mislabelled but names no label" in text
    assert "line 6: image 5 already has label" not in text and "line 6" not in text  # 4 is not 5's label (5)
    assert "line 7: label 'horse?' is not a class" in text


def test_a_confirm_with_the_given_label_and_two_verdicts_on_one_image_are_refused(home):
    labels = run_labels("cv", "train", home)
    same = pd.DataFrame({"index": ["5"], "verdict": ["confirmed"], "new_label": ["dog"]})  # 5 is a dog already
    with pytest.raises(VerdictFileError, match="image 5 already has label dog"):
        read_verdicts(as_bytes(same), labels)
    twice = pd.DataFrame({"index": ["8", "8"], "verdict": ["rejected", "unsure"]})
    with pytest.raises(VerdictFileError, match="image 8 on lines 2, 3"):
        read_verdicts(as_bytes(twice), labels)


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00i\x00n", "not UTF-8"),
    (b"index,label\n1,2\n", "no 'verdict' column"),
    (b"", "not a readable CSV table"),
])
def test_an_unreadable_file_is_named(home, content, message):
    with pytest.raises(VerdictFileError, match=message):
        read_verdicts(content, run_labels("cv", "train", home))


def test_spreadsheet_neutralised_cells_are_read_back(home):
    table = pd.DataFrame({"index": ["'12"], "verdict": ["confirmed"], "new_label": ["'7"]})
    got = read_verdicts(as_bytes(table), run_labels("cv", "train", home))
    assert got["index"].tolist() == [12] and got["label"].tolist() == [7]


def test_recorded_verdicts_are_the_reviewers_and_a_second_import_changes_nothing(home):
    labels = run_labels("cv", "train", home)
    table = read_verdicts(as_bytes(pd.DataFrame({"index": ["11", "42"], "verdict": ["confirmed", "unsure"],
                                                 "new_label": ["cat", ""]})), labels)
    with ReviewStore(home / "reviews.sqlite") as store:
        assert record_verdicts(store, "cv", table, "ann", "train", labels) == {"saved": 2, "unchanged": 0}
        assert record_verdicts(store, "cv", table, "ann", "train", labels) == {"saved": 0, "unchanged": 2}
        saved = store.current_mislabels(split="train").sort_values("index")
        assert store.current_mislabels(split="test").empty
    assert saved["verdict"].tolist() == ["confirmed", "unsure"] and saved["suggested_label"].tolist()[0] == 3


def cli(home, *args):
    env = dict(os.environ, CIFAR_MTL_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "cifar_mtl", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_command_line_review_loop_rank_fill_import_list_build(home):
    out = home / "suspects.csv"
    assert cli(home, "mislabels", "--split", "train", "--run", "cv", "--top", "5", "--out", str(out)).returncode == 0
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    table["verdict"] = ["confirmed", "confirmed", "unsure", "rejected", ""]
    table["new_label"] = ["", "ship", "", "", ""]
    table.to_csv(out, index=False)
    done = cli(home, "verdicts", "import", str(out), "--run", "cv", "--reviewer", "ann", "--split", "train")
    assert done.returncode == 0, done.stderr
    assert "4 verdict(s) saved for ann on train images of cv (2 confirmed, 1 rejected, 1 unsure)" in done.stdout
    assert "labels build --name NAME --run cv" in done.stdout
    listed = cli(home, "verdicts", "list", "--split", "train", "--run", "cv")
    assert listed.returncode == 0 and listed.stdout.count("ann") == 4 and "ship" in listed.stdout
    built = cli(home, "labels", "build", "--name", "fixes", "--run", "cv")
    assert built.returncode == 0, built.stderr
    assert "fixes@v1: 2 relabelled, 1 excluded" in built.stdout
    shown = cli(home, "labels", "show", "fixes")
    relabelled = int(table["index"][1])
    assert f"{relabelled},relabel,8" in shown.stdout.replace(" ", "")


def test_the_command_line_refuses_a_bad_file_and_saves_nothing(home):
    bad = home / "bad.csv"
    bad.write_text("index,verdict\n11,confirmed\n42,rejected\n", encoding="utf-8")  # 11 names no label
    done = cli(home, "verdicts", "import", str(bad), "--run", "cv", "--reviewer", "ann", "--split", "train")
    assert done.returncode == 1 and "line 2: image 11 is confirmed mislabelled but names no label" in done.stderr
    assert "Traceback" not in done.stderr
    assert "no train verdicts yet" in cli(home, "verdicts", "list", "--split", "train").stdout
    missing = cli(home, "verdicts", "import", str(home / "nope.csv"), "--run", "cv", "--reviewer", "ann",
                  "--split", "train")
    assert missing.returncode == 1 and "nope.csv: no such file" in missing.stderr
    empty = home / "empty.csv"
    empty.write_text("index,verdict\n11,\n", encoding="utf-8")
    none = cli(home, "verdicts", "import", str(empty), "--run", "cv", "--reviewer", "ann", "--split", "train")
    assert none.returncode == 1 and "no verdicts in" in none.stderr
    unknown = cli(home, "verdicts", "import", str(empty), "--run", "nope", "--reviewer", "ann")
    assert unknown.returncode == 2 and "no run named 'nope'" in unknown.stderr
