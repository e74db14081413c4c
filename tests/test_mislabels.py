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
