"""The label loop's page logic (cifar_mtl.app.label_loop) and the training images it shows."""

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.app import label_loop
from cifar_mtl.cifar10 import DataError, load_cifar10, load_train_view
from cifar_mtl.synthetic import write_fake_cifar


def ranked(index, label) -> pd.DataFrame:
    return pd.DataFrame({"index": np.asarray(index, np.int64), "label": np.asarray(label, np.int64)})


def test_train_images_match_when_every_listed_label_agrees():
    labels = np.array([3, 1, 4, 1, 5])
    assert label_loop.train_images_problem(ranked([4, 0, 2], [5, 3, 4]), labels) is None
    assert label_loop.train_images_problem(ranked([], []), labels) is None  # nothing listed, nothing to hide


@pytest.mark.parametrize("index, label", [([4, 0], [5, 2]), ([4, 5], [5, 0])], ids=["other label", "beyond the set"])
def test_train_images_of_another_dataset_are_hidden_with_what_to_do(index, label):
    problem = label_loop.train_images_problem(ranked(index, label), np.array([3, 1, 4, 1, 5]))
    assert "training set (5 images) does not match" in problem and "CIFAR10_DIR" in problem


def test_train_summary_counts_and_datalab_types():
    verdicts = pd.DataFrame({"index": [7, 7, 9], "reviewer": ["ann", "bob", "ann"]})
    plain = ranked([1, 7, 9], [0, 0, 0])
    assert label_loop.train_summary(plain, verdicts) == {
        "ranked": 3, "judged": 2, "verdicts": 3, "label_issues": None, "datalab_types": []}
    flagged = plain.assign(is_label_issue=[True, False, True], is_near_duplicate_issue=[False, True, False])
    got = label_loop.train_summary(flagged, verdicts)
    assert got["label_issues"] == 2 and got["datalab_types"] == ["label", "near_duplicate"]


def test_with_issues_keeps_rows_flagged_with_any_pick():
    table = ranked([1, 2, 3], [0, 0, 0]).assign(is_label_issue=[True, False, False],
                                               is_outlier_issue=[False, True, False])
    assert label_loop.with_issues(table, ["label", "outlier"])["index"].tolist() == [1, 2]
    assert label_loop.with_issues(table, ["near_duplicate"])["index"].tolist() == [1, 2, 3]  # no such column
    assert label_loop.issues_text(table.iloc[1].to_dict()) == "Datalab: outlier"
    assert label_loop.issues_text(table.iloc[2].to_dict()) == ""


def test_datalab_hint_names_the_command_when_embeddings_exist_without_fresh_flags(home):
    from cifar_mtl.evidence.files import write_embeddings

    folder = home / "runs" / "cv"
    folder.mkdir(parents=True)
    plain, flagged = ranked([1], [0]), ranked([1], [0]).assign(is_label_issue=[False])
    assert label_loop.datalab_hint("cv", plain) is None  # no embeddings: nothing to compute the flags from
    rng = np.random.default_rng(0)
    write_embeddings(folder, rng.normal(size=(5, 4)))
    assert label_loop.datalab_hint("cv", plain) is None  # test side only
    write_embeddings(folder, rng.normal(size=(5, 4)), rng.normal(size=(20, 4)))
    hint = label_loop.datalab_hint("cv", plain)
    assert "`python -m cifar_mtl mislabels --split train --run cv --datalab`" in hint and "minutes" in hint
    assert label_loop.datalab_hint("cv", flagged) is None  # the flags are there


def test_datalab_hint_offers_a_training_runs_embeddings_on_the_same_data(home):
    import json

    from cifar_mtl.evidence.files import write_embeddings

    rng = np.random.default_rng(0)
    for run, fingerprint in (("cv", "abc"), ("other-data", "xyz"), ("trained", "abc")):
        folder = home / "runs" / run
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"data_fingerprint": fingerprint}))
        if run != "cv":
            write_embeddings(folder, rng.normal(size=(5, 4)), rng.normal(size=(20, 4)))
    plain = ranked([1], [0])
    assert label_loop.datalab_hint("cv", plain, ["other-data"]) is None  # another dataset's embeddings
    hint = label_loop.datalab_hint("cv", plain, ["cv", "other-data", "trained"])
    assert "`python -m cifar_mtl mislabels --split train --run cv --datalab --embeddings-from trained`" in hint


def test_a_ranking_is_recomputed_when_the_datalab_file_changes(home):
    from cifar_mtl.mislabels import DATALAB_FILE

    folder = home / "runs" / "cv"
    folder.mkdir(parents=True)
    before = label_loop._stamps(home, ("cv",))
    pd.DataFrame({"index": [1]}).to_parquet(folder / DATALAB_FILE)
    assert label_loop._stamps(home, ("cv",)) != before


def test_preview_counts_judged_only_by_the_chosen_reviewers():
    table = pd.DataFrame({"action": ["relabel", "exclude", "relabel"]})
    verdicts = pd.DataFrame({"index": [5, 5, 7, 9], "reviewer": ["ann", "bob", "bob", "cy"]})
    assert label_loop.preview_counts(table, verdicts, ["ann", "bob"]) == {
        "rows": 3, "relabel": 2, "exclude": 1, "judged": 2}
    assert label_loop.preview_counts(table, verdicts, [])["judged"] == 0


def test_saved_text_names_the_version_its_counts_and_how_to_retrain():
    text = label_loop.saved_text("round1", 2, pd.DataFrame({"action": ["relabel", "exclude", "exclude"]}),
                                 "/h/labelsets/round1/v2.csv")
    assert text.startswith("Saved label set round1@v2: 1 relabel(s), 2 exclusion(s), in `/h/labelsets/round1/v2.csv`")
    assert text.endswith("Retrain page, Label set round1@v2.")


@pytest.mark.parametrize("tar", [False, True], ids=["folder", "tarball"])
def test_train_view_holds_the_training_images_and_labels_of_load_cifar10(tmp_path, tar):
    source = str(write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=30, seed=4, tar=tar))
    images, labels = load_train_view(source)
    data = load_cifar10(source, allow_download=False)
    assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, data.x_train) and np.array_equal(labels, data.y_train)


def test_train_view_never_downloads(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_train_view(str(tmp_path / "nowhere"))


class _RunsCommand:
    """Unpickling this runs a shell command: what a crafted batch file could do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_train_view_reads_each_file_with_the_same_checks_as_load_cifar10(tmp_path):
    """The view unpickles straight from each file: the restricted unpickler and the size
    checks still apply, and a missing, short or crafted file is named."""
    folder = write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=30)
    whole = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="data_batch_3: cannot be read as a CIFAR-10 batch.*truncated"):
        load_train_view(str(folder))
    other = write_fake_cifar(tmp_path / "other", n_train_per_batch=5, n_test=5)
    (folder / "data_batch_3").write_bytes((other / "data_batch_1").read_bytes())
    with pytest.raises(DataError, match="data_batch_3: holds 5 images; the folder's .* says 20"):
        load_train_view(str(folder))
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _RunsCommand(f"touch {marker}"), b"labels": [0] * 20}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_3: refused: it asks to load posix\.system"):
        load_train_view(str(folder))
    assert not marker.exists()
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: missing"):
        load_train_view(str(folder))
