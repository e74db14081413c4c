"""Mislabel ranking with cleanlab, reviewer resolution, corrected accuracy."""

import numpy as np
import pandas as pd
import pytest
from cleanlab.rank import get_label_quality_scores

from cifar_mtl.mislabels import (
    NoPredictionsError,
    without_judged,
    RANK_COLUMNS,
    corrected_accuracy,
    corrected_labels,
    rank_mislabels,
    resolve_mislabels,
)
from cifar_mtl.predictions import PROB_COLUMNS, predictions_table
from cifar_mtl.synthetic import fake_probabilities


@pytest.fixture
def preds():
    labels = np.arange(200) % 10
    probs = fake_probabilities(labels, accuracy=0.9, seed=3)
    # Image 17 (label 7) looks very much like a ship: the planted mislabel.
    probs[17] = 1e-6
    probs[17, 8] = 1 - 9e-6
    return predictions_table(probs, labels, index=np.arange(200))


def test_rank_puts_planted_mislabel_first(preds):
    ranked = rank_mislabels(preds)
    assert list(ranked.columns) == RANK_COLUMNS and len(ranked) == 200
    top = ranked.iloc[0]
    assert top["index"] == 17 and top["label"] == 7 and top["label_name"] == "horse"
    assert top["suggested"] == 8 and top["suggested_name"] == "ship"
    assert top["prob_suggested"] == pytest.approx(1 - 9e-6, abs=1e-6)
    assert ranked["quality"].is_monotonic_increasing


def test_rank_matches_cleanlab(preds):
    ranked = rank_mislabels(preds, method="self_confidence").sort_values("index")
    probs = preds[PROB_COLUMNS].to_numpy(np.float64)
    expected = get_label_quality_scores(preds["label"].to_numpy(), probs, method="self_confidence")
    assert np.allclose(ranked["quality"], expected)
    assert np.allclose(ranked["quality"], ranked["prob_label"])  # self-confidence is p(label)


def test_top(preds):
    assert rank_mislabels(preds, top=5)["index"].tolist() == rank_mislabels(preds)["index"].tolist()[:5]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive whole number"):
            rank_mislabels(preds, top=bad)
    with pytest.raises(ValueError, match="unknown method"):
        rank_mislabels(preds, method="confident_learning")


def test_several_runs_are_averaged(preds):
    other = predictions_table(
        fake_probabilities(preds["label"].to_numpy(), 0.7, seed=9), preds["label"].to_numpy()
    )
    shuffled = other.sample(frac=1.0, random_state=0)  # order must not matter
    ranked = rank_mislabels([preds, shuffled]).set_index("index").sort_index()
    mean = (preds[PROB_COLUMNS].to_numpy(np.float64) + other[PROB_COLUMNS].to_numpy(np.float64)) / 2
    labels = preds["label"].to_numpy()
    assert np.allclose(ranked["prob_label"], mean[np.arange(200), labels])
    assert (ranked["suggested"].to_numpy() == mean.argmax(axis=1)).all()


def test_runs_that_do_not_match_are_refused(preds):
    with pytest.raises(ValueError, match="other test images"):
        rank_mislabels([preds, preds.iloc[:100]])
    relabelled = preds.assign(label=((preds["label"] + 1) % 10).astype("int8"))
    with pytest.raises(ValueError, match="other labels"):
        rank_mislabels([preds, relabelled])
    with pytest.raises(ValueError, match="no predictions"):
        rank_mislabels([])


@pytest.mark.parametrize("method", ["normalized_margin", "self_confidence"])
def test_an_empty_predictions_table_is_a_clear_error(preds, method):
    empty = preds.iloc[:0]
    for tables in (empty, [empty, empty]):
        with pytest.raises(NoPredictionsError, match="has no rows.*python -m cifar_mtl predict") as err:
            rank_mislabels(tables, method=method, top=5)
        assert isinstance(err.value, ValueError)
    fresh = predictions_table(np.zeros((0, 10), np.float32), np.zeros(0, np.int64))
    with pytest.raises(NoPredictionsError):
        rank_mislabels(fresh)


def verdicts(rows):
    return pd.DataFrame(rows, columns=["index", "reviewer", "verdict", "suggested_label"]).astype(
        {"suggested_label": "Int64"}
    )


def test_resolve_majority_ties_and_unsure():
    m = verdicts(
        [
            (1, "ann", "confirmed", 3),  # alone: corrected to 3
            (2, "ann", "confirmed", 4),  # 4 vs the test label: tie, kept
            (2, "bob", "rejected", None),
            (3, "ann", "confirmed", 5),  # two votes for 5 against one for 6
            (3, "bob", "confirmed", 5),
            (3, "cy", "confirmed", 6),
            (4, "ann", "unsure", 2),  # unsure does not vote
            (5, "ann", "rejected", None),
            (5, "bob", "rejected", None),
            (5, "cy", "confirmed", 1),
        ]
    )
    out = resolve_mislabels(m)
    assert out.values.tolist() == [[1, 3, 1, 1], [3, 5, 2, 3]]
    with pytest.raises(ValueError, match="missing columns"):
        resolve_mislabels(pd.DataFrame({"index": [1]}))


def test_corrected_labels_and_accuracy(preds):
    pred = preds["pred"].to_numpy()
    wrong = [i for i in np.flatnonzero(pred != preds["label"].to_numpy()) if i >= 10 and i != 17]
    a, b = int(wrong[0]), int(wrong[1])
    m = verdicts(
        [
            (17, "ann", "confirmed", 8),  # image 17: the model says ship, now right
            (a, "ann", "confirmed", int(pred[a])),
            (b, "ann", "unsure", int(pred[b])),
        ]
    )
    subset = preds.iloc[10:].copy()  # a row index that does not start at 0
    labels = corrected_labels(subset, m)
    assert labels.index.equals(subset.index) and labels.name == "label"
    assert labels.loc[17] == 8 and labels.loc[b] == subset.loc[b, "label"]
    result = corrected_accuracy(preds, m)
    n_right = int((pred == preds["label"].to_numpy()).sum())
    assert result["n"] == 200 and result["n_corrected"] == 2
    assert result["accuracy"] == n_right / 200
    assert result["corrected_accuracy"] == (n_right + 2) / 200


def test_without_judged_keeps_only_this_reviewers_open_suspects():
    ranked = pd.DataFrame({"index": [5, 7, 9], "quality": [0.1, 0.2, 0.3]})
    verdicts = pd.DataFrame({"index": [7, 9], "reviewer": ["ann", "bob"], "verdict": ["rejected", "unsure"]})
    assert without_judged(ranked, verdicts, "ann")["index"].tolist() == [5, 9]
    assert without_judged(ranked, verdicts, "cy")["index"].tolist() == [5, 7, 9]


# --- the training split (issue 16) -------------------------------------------------------


@pytest.fixture
def train_preds():
    """Out-of-sample predictions for 300 training images whose indices run past the test set's."""
    labels = np.arange(300) % 10
    probs = fake_probabilities(labels, accuracy=0.9, seed=5)
    probs[40] = 1e-6  # training image 20040, labelled 0, looks like a cat
    probs[40, 3] = 1 - 9e-6
    table = predictions_table(probs, labels, index=np.arange(20_000, 20_300))
    table["fold"] = (np.arange(300) % 3).astype("int8")
    return table


def test_train_ranking_keeps_training_indices_and_folds(train_preds):
    from cifar_mtl.mislabels import rank_train_mislabels

    ranked = rank_train_mislabels(train_preds)
    assert ranked.loc[0, "index"] == 20_040 and ranked.loc[0, "suggested_name"] == "cat"
    assert ranked.loc[0, "fold"] == 40 % 3 and len(ranked) == 300
    assert list(ranked.columns) == [*RANK_COLUMNS, "fold"]
    assert rank_train_mislabels(train_preds, top=7)["index"].tolist() == ranked["index"].tolist()[:7]


def test_train_ranking_with_datalab_flags_planted_issues(train_preds):
    from cifar_mtl.mislabels import DATALAB_COLUMNS, rank_train_mislabels

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 16)) * 4
    features = np.zeros((20_300, 16), np.float32)  # rows by training index
    idx = train_preds["index"].to_numpy()
    features[idx] = centres[train_preds["label"]] + rng.normal(size=(300, 16))
    features[20_100] = features[20_200] + 1e-4  # a near-duplicate pair (both labelled 0)
    features[20_250] = 500.0  # far from everything: an outlier
    ranked = rank_train_mislabels(train_preds, features=features).set_index("index")
    assert all(c in ranked.columns for c in DATALAB_COLUMNS)
    assert ranked.loc[20_100, "is_near_duplicate_issue"] and ranked.loc[20_200, "is_near_duplicate_issue"]
    assert ranked.loc[20_250, "is_outlier_issue"]
    assert ranked.loc[20_040, "is_label_issue"]
    assert ranked["is_near_duplicate_issue"].sum() < 30 and ranked["is_outlier_issue"].sum() < 30
    with pytest.raises(ValueError, match="beyond the 100 rows"):
        rank_train_mislabels(train_preds, features=features[:100])


def _crossval_home(tmp_path, train_preds, embeddings: bool = True):
    """A home with run "cv": `train_preds` as its train predictions and, if asked, training
    embeddings (rows by training index: classes in clusters, a near-duplicate pair)."""
    from cifar_mtl.evidence.files import write_embeddings
    from cifar_mtl.mislabels import TRAIN_PREDICTIONS_FILE

    folder = tmp_path / "runs" / "cv"
    folder.mkdir(parents=True)
    train_preds.to_parquet(folder / TRAIN_PREDICTIONS_FILE, index=False)
    if embeddings:
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(10, 16)) * 4
        train = rng.normal(size=(20_300, 16))
        train[train_preds["index"]] += centres[train_preds["label"]]
        train[20_100] = train[20_200]
        write_embeddings(folder, rng.normal(size=(50, 16)), train)
    return folder


def _aged(path, seconds: float) -> None:
    """Set `path`'s modification time `seconds` into the past."""
    import os
    import time

    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_datalab_flags_are_written_once_and_read_back(train_preds, tmp_path):
    from cifar_mtl.evidence.files import read_embeddings
    from cifar_mtl.mislabels import DATALAB_COLUMNS, DATALAB_FILE, datalab_issues, read_datalab, write_datalab

    folder = _crossval_home(tmp_path, train_preds)
    assert read_datalab("cv", tmp_path) is None  # not computed yet
    lines = []
    path, table = write_datalab("cv", tmp_path, log=lines.append)
    assert path == folder / DATALAB_FILE and list(table.columns) == ["index", *DATALAB_COLUMNS]
    index = train_preds["index"].to_numpy()
    expected = datalab_issues(train_preds["label"], train_preds[PROB_COLUMNS],
                              read_embeddings(folder, "train")[index])
    back = read_datalab("cv", tmp_path)
    pd.testing.assert_frame_equal(back.drop(columns="index"), expected)
    assert back["index"].tolist() == index.tolist()
    flagged = back.set_index("index")
    assert flagged.loc[20_040, "is_label_issue"]
    assert flagged.loc[20_100, "is_near_duplicate_issue"] and flagged.loc[20_200, "is_near_duplicate_issue"]
    assert "300 training images" in lines[0] and " s, saved to " in lines[-1] and str(path) in lines[-1]


@pytest.mark.parametrize("rewritten", ["train_predictions.parquet", "embeddings.npz"])
def test_stale_datalab_flags_are_never_used(train_preds, tmp_path, rewritten):
    from cifar_mtl.mislabels import read_datalab, train_ranking_of_runs, write_datalab

    folder = _crossval_home(tmp_path, train_preds)
    write_datalab("cv", tmp_path, log=lambda line: None)
    fresh = train_ranking_of_runs("cv", home_dir=tmp_path)
    assert fresh["is_label_issue"].dtype == bool and fresh.loc[0, "index"] == 20_040 and fresh.loc[0, "is_label_issue"]
    for name, age in [("train_predictions.parquet", 30), ("embeddings.npz", 30), ("datalab.parquet", 20),
                      (rewritten, 10)]:  # `rewritten` changed after the flags were saved
        _aged(folder / name, age)
    assert read_datalab("cv", tmp_path) is None
    assert "is_label_issue" not in train_ranking_of_runs("cv", home_dir=tmp_path).columns
    write_datalab("cv", tmp_path, log=lambda line: None)
    assert read_datalab("cv", tmp_path) is not None  # rewritten after its inputs: fresh again
    (folder / "embeddings.npz").unlink()
    assert read_datalab("cv", tmp_path) is None  # an input gone: nothing says the flags still hold


def test_train_ranking_merges_saved_flags_and_never_runs_datalab(train_preds, tmp_path, monkeypatch):
    from cifar_mtl import mislabels

    folder = _crossval_home(tmp_path, train_preds)
    mislabels.write_datalab("cv", tmp_path, log=lambda line: None)
    saved = mislabels.read_datalab("cv", tmp_path).iloc[::2]  # flags covering every other image only
    from cifar_mtl.runs import atomic_write_parquet

    atomic_write_parquet(folder / mislabels.DATALAB_FILE, saved)

    def refuse(*args, **kwargs):
        raise AssertionError("Datalab ran while ranking")

    monkeypatch.setattr(mislabels, "datalab_issues", refuse)
    ranked = mislabels.train_ranking_of_runs(["cv", "cv"], top=50, home_dir=tmp_path)
    assert len(ranked) == 50 and all(c in ranked.columns for c in mislabels.DATALAB_COLUMNS)
    uncovered = ~ranked["index"].isin(saved["index"])
    assert uncovered.any() and not ranked.loc[uncovered, "is_label_issue"].any()
    assert ranked.loc[uncovered, "label_score"].isna().all()


def test_datalab_without_training_embeddings_says_how_to_make_them(train_preds, tmp_path):
    from cifar_mtl.mislabels import DATALAB_FILE, write_datalab
    from cifar_mtl.runs import RunError

    folder = _crossval_home(tmp_path, train_preds, embeddings=False)
    with pytest.raises(RunError, match=r"no training embeddings.*keeps no model.*--embeddings-from RUN_ID"):
        write_datalab("cv", tmp_path)
    (folder / "model.keras").write_bytes(b"")  # a run with a model: `evidence` can embed its images
    with pytest.raises(RunError, match=r"no training embeddings.*`python -m cifar_mtl evidence --run cv`"):
        write_datalab("cv", tmp_path)
    assert not (folder / DATALAB_FILE).exists()


def test_datalab_takes_a_training_runs_embeddings_and_follows_them(train_preds, tmp_path):
    import json
    import shutil

    from cifar_mtl.mislabels import DATALAB_FILE, read_datalab, write_datalab
    from cifar_mtl.runs import RunError

    folder = _crossval_home(tmp_path, train_preds)
    trained = tmp_path / "runs" / "trained"
    trained.mkdir()
    shutil.move(folder / "embeddings.npz", trained / "embeddings.npz")  # cross-validation keeps no model
    for run in (folder, trained):
        (run / "metrics.json").write_text(json.dumps({"data_fingerprint": "abc"}))
    lines = []
    write_datalab("cv", tmp_path, log=lines.append, embeddings_from="trained")
    assert "embeddings of run trained" in lines[0]
    flags = read_datalab("cv", tmp_path)
    assert flags is not None and flags.set_index("index").loc[20_100, "is_near_duplicate_issue"]
    for name, age in [("runs/cv/train_predictions.parquet", 30), ("runs/cv/" + DATALAB_FILE, 20),
                      ("runs/trained/embeddings.npz", 10)]:  # the training run's embeddings rewritten since
        _aged(tmp_path / name, age)
    assert read_datalab("cv", tmp_path) is None
    (trained / "metrics.json").write_text(json.dumps({"data_fingerprint": "other"}))
    with pytest.raises(RunError, match=r"'trained' was trained on another dataset than run 'cv'"):
        write_datalab("cv", tmp_path, embeddings_from="trained")


def test_damaged_datalab_file_names_the_command_that_rewrites_it(train_preds, tmp_path):
    from cifar_mtl.mislabels import DATALAB_FILE, read_datalab
    from cifar_mtl.runs import RunError

    folder = _crossval_home(tmp_path, train_preds)
    (folder / DATALAB_FILE).write_bytes(b"PAR1 not really")
    with pytest.raises(RunError, match="cannot be read.*mislabels --split train --run cv --datalab"):
        read_datalab("cv", tmp_path)
    pd.DataFrame({"index": [1]}).to_parquet(folder / DATALAB_FILE)
    with pytest.raises(RunError, match="missing columns"):
        read_datalab("cv", tmp_path)


def test_train_predictions_of_a_run_without_crossval_are_refused(tmp_path):
    from cifar_mtl.mislabels import load_train_predictions
    from cifar_mtl.runs import RunError

    (tmp_path / "runs" / "plain").mkdir(parents=True)
    with pytest.raises(RunError, match="not a cross-validation|no train_predictions.parquet.*crossval"):
        load_train_predictions("plain", tmp_path)


def test_train_predictions_round_trip(train_preds, tmp_path):
    from cifar_mtl.mislabels import TRAIN_PREDICTIONS_FILE, load_train_predictions

    folder = tmp_path / "runs" / "cv"
    folder.mkdir(parents=True)
    train_preds.to_parquet(folder / TRAIN_PREDICTIONS_FILE, index=False)
    back = load_train_predictions("cv", tmp_path)
    assert back["index"].tolist() == train_preds["index"].tolist() and "fold" in back.columns
    train_preds.drop(columns=["fold"]).to_parquet(folder / TRAIN_PREDICTIONS_FILE, index=False)
    with pytest.raises(Exception, match="missing columns \\['fold'\\]"):
        load_train_predictions("cv", tmp_path)


def test_cli_ranks_the_training_split(train_preds, tmp_path):
    import os
    import subprocess
    import sys

    folder = tmp_path / "runs" / "cv"
    folder.mkdir(parents=True)
    train_preds.to_parquet(folder / "train_predictions.parquet", index=False)
    out = tmp_path / "ranked.csv"
    env = dict(os.environ, CIFAR_MTL_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "cifar_mtl", "mislabels", "--split", "train", "--run", "cv",
                           "--top", "5", "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[4].split()
    assert first[:4] == ["1", "20040", "airplane", "cat"]
    assert pd.read_csv(out)["index"].tolist()[0] == 20_040 and len(pd.read_csv(out)) == 5
    done = subprocess.run([sys.executable, "-m", "cifar_mtl", "mislabels", "--split", "train", "--run", "cv2"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no run named 'cv2'" in done.stderr
    (tmp_path / "runs" / "plain").mkdir()
    done = subprocess.run([sys.executable, "-m", "cifar_mtl", "mislabels", "--split", "train", "--run", "plain"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "crossval --config cpu_crossval" in done.stderr


def test_verdicts_on_one_image_and_the_reviewers_own():
    from cifar_mtl.mislabels import verdicts_on

    verdicts = pd.DataFrame({"index": [7, 7, 9], "reviewer": ["ann", "bob", "ann"],
                             "verdict": ["rejected", "unsure", "confirmed"]})
    theirs, mine = verdicts_on(verdicts, 7, "bob")
    assert theirs["reviewer"].tolist() == ["ann", "bob"] and mine == ["unsure"]
    assert verdicts_on(verdicts, 7, None)[1] == [] and verdicts_on(verdicts, 8, "ann")[0].empty


def test_train_predictions_read_only_the_ranking_inputs_when_asked(train_preds, tmp_path):
    from cifar_mtl.mislabels import RANKING_INPUTS, TRAIN_PREDICTIONS_FILE, load_train_predictions

    folder = tmp_path / "runs" / "cv"
    folder.mkdir(parents=True)
    train_preds.to_parquet(folder / TRAIN_PREDICTIONS_FILE, index=False)
    assert list(load_train_predictions("cv", tmp_path, columns=RANKING_INPUTS).columns) == RANKING_INPUTS
    assert list(load_train_predictions("cv", tmp_path, columns=["loss"]).columns) == [*RANKING_INPUTS, "loss"]
    (folder / TRAIN_PREDICTIONS_FILE).write_bytes(b"PAR1 not really")
    with pytest.raises(Exception, match="cannot be read"):
        load_train_predictions("cv", tmp_path, columns=RANKING_INPUTS)
