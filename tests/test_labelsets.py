"""Label sets: the agreement rule, versioned files, the team database, applying a set, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from cifar_mtl import labelsets as ls
from cifar_mtl.cli import main
from cifar_mtl.stores.database import DB_ENV
from cifar_mtl.stores.reviews import ReviewStore
from tests.db_engines import db_target, engine_home, new_target  # noqa: F401  (fixtures)


def verdicts(*rows) -> pd.DataFrame:
    """(index, reviewer, verdict, suggested) tuples as `current_mislabels(split="train")` returns them."""
    df = pd.DataFrame(rows, columns=["index", "reviewer", "verdict", "suggested_label"])
    df["suggested_label"] = df["suggested_label"].astype("Int64")
    df["run_id"] = "cv1"
    df["at"] = pd.Timestamp("2026-01-02T03:04:05", tz="UTC") + pd.to_timedelta(np.arange(len(df)), unit="s")
    return df


VOTES = verdicts(
    (5, "ann", "confirmed", 3), (5, "bob", "confirmed", 3), (5, "cy", "rejected", None),  # 2 of 3 relabel to 3
    (7, "ann", "unsure", None),  # a lone unsure: exclude
    (9, "ann", "confirmed", 1), (9, "bob", "confirmed", 2),  # a tie: nothing
    (11, "ann", "rejected", None), (11, "bob", "rejected", None), (11, "cy", "confirmed", 4),  # keep wins
    (13, "bob", "unsure", None), (13, "cy", "unsure", 6),  # 2 unsure: exclude
)


def test_agreement_rule_with_min_agree_1():
    table = ls.build_label_set(VOTES)
    assert list(table.columns) == ls.LABELSET_COLUMNS
    assert table["index"].tolist() == [5, 7, 13]
    assert table["action"].tolist() == ["relabel", "exclude", "exclude"]
    assert table["label"].tolist()[0] == 3 and table["label"].isna().tolist() == [False, True, True]
    assert table["reviewers"].tolist() == ["ann;bob", "ann", "bob;cy"]
    # decided when the last of its deciders decided
    assert table["decided_at"].iloc[0] == VOTES["at"].iloc[1]
    assert table["given_label"].isna().all()


def test_min_agree_2_needs_two_matching_votes():
    table = ls.build_label_set(VOTES, min_agree=2)
    assert table["index"].tolist() == [5, 13]


def test_reviewers_filter_and_unknown_reviewer():
    table = ls.build_label_set(VOTES, reviewers=["ann"])
    # ann alone: 5 -> 3, 7 excluded, 9 -> 1 (no tie without bob); 11 is a keep
    assert table["index"].tolist() == [5, 7, 9] and table["label"].tolist()[2] == 1
    with pytest.raises(ls.LabelSetError, match="no training-image verdicts by 'zed'"):
        ls.build_label_set(VOTES, reviewers=["ann", "zed"])
    with pytest.raises(ls.LabelSetError, match="min_agree"):
        ls.build_label_set(VOTES, min_agree=0)


def test_given_labels_fill_the_column_and_turn_a_relabel_to_itself_into_a_keep():
    given = np.zeros(50_000, dtype=np.int64)
    given[5] = 3  # the confirmed label is the given one: both votes say "keep"
    table = ls.build_label_set(VOTES, given_labels=given)
    assert table["index"].tolist() == [7, 13]
    assert table["given_label"].tolist() == [0, 0]


def test_preview_table_names_the_classes_for_a_reader():
    table = ls.build_label_set(VOTES, given_labels=np.array([9] * 20))
    shown = ls.preview_table(table)
    assert list(shown.columns) == ["training image", "action", "given label", "new label", "reviewers",
                                   "decided at (UTC)"]
    assert shown["new label"].tolist() == ["3 cat", "", ""] and shown["given label"].tolist() == ["9 truck"] * 3
    assert shown["reviewers"].tolist() == ["ann, bob", "ann", "bob, cy"]
    assert ls.class_text(-1) == "" and ls.class_text(pd.NA) == "" and ls.class_text(0) == "0 airplane"


@pytest.mark.parametrize("name, problem", [("", "Give the set a name"), ("no good/name", "must be 1-64 letters"),
                                           ("round1", None)])
def test_name_problem_says_what_is_wrong_with_a_name(name, problem):
    got = ls.name_problem(name)
    assert got is None if problem is None else problem in got


def test_from_ranking_relabels_the_top_n_to_the_suggestion():
    ranking = pd.DataFrame({"index": [40, 3, 17, 8], "label": [1, 2, 5, 0], "suggested": [7, 2, 6, 9]})
    table = ls.from_ranking(ranking, top_n=3)
    assert table["index"].tolist() == [17, 40]  # 3's suggestion is its own label
    assert table["label"].tolist() == [6, 7] and table["given_label"].tolist() == [5, 1]
    assert set(table["reviewers"]) == {"auto:normalized_margin"}


def test_from_ranking_can_exclude_the_top_n_instead():
    ranking = pd.DataFrame({"index": [40, 3, 17, 8], "label": [0, 3, 7, 8], "suggested": [7, 3, 6, 9]})
    table = ls.from_ranking(ranking, top_n=3, method="self_confidence", action="exclude")
    assert table["index"].tolist() == [3, 17, 40]  # every suspect leaves training, its suggestion aside
    assert set(table["action"]) == {"exclude"} and set(table["reviewers"]) == {"auto:self_confidence"}
    labels, excluded = ls.apply_label_set(np.arange(50) % 10, table)
    assert excluded[[3, 17, 40]].all() and excluded.sum() == 3 and (labels == np.arange(50) % 10).all()
    with pytest.raises(ls.LabelSetError, match="relabel' or 'exclude"):
        ls.from_ranking(ranking, top_n=3, action="drop")


def test_csv_round_trip_and_damage():
    table = ls.build_label_set(VOTES, given_labels=np.arange(50_000) % 10)
    text = ls.to_csv(table)
    assert text.splitlines()[0] == "index,action,label,label_name,given_label,given_name,reviewers,decided_at"
    assert "5,relabel,3,cat,5,dog,ann;bob,2026-01-02T03:04:06+00:00" in text
    back = ls.from_csv(text, "x.csv")
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    with pytest.raises(ls.LabelSetError, match="damaged"):
        ls.from_csv(text.replace("relabel,3,cat", "relabel,,cat"), "x.csv")
    with pytest.raises(ls.LabelSetError, match="lacks columns"):
        ls.from_csv("index,action\n1,exclude\n", "x.csv")


def test_versions_are_new_files_never_overwritten(home):
    table = ls.build_label_set(VOTES)
    v1, p1 = ls.save_label_set(table, "fixes", source_runs=["cv1"], rule={"min_agree": 1}, built_by="ann")
    v2, p2 = ls.save_label_set(table.head(1), "fixes", built_by="bob")
    assert (v1, v2) == (1, 2) and p1 == home / "labelsets" / "fixes" / "v1.csv" and p2.name == "v2.csv"
    assert len(ls.load_label_set("fixes@v1")) == 3 and len(ls.load_label_set("fixes")) == 1
    manifest = json.loads(p1.with_suffix(".json").read_text())
    assert manifest["counts"] == {"rows": 3, "relabel": 1, "exclude": 2}
    assert manifest["built_by"] == "ann" and manifest["source_runs"] == ["cv1"] and manifest["version"] == 1
    listed = ls.list_label_sets()
    assert listed[["name", "version", "rows", "built_by"]].values.tolist() == [["fixes", 1, 3, "ann"],
                                                                                ["fixes", 2, 1, "bob"]]
    # a version file a crashed build left behind is skipped, not overwritten
    (home / "labelsets" / "fixes" / "v3.csv").write_text("stray")
    assert ls.save_label_set(table, "fixes")[0] == 4
    assert (home / "labelsets" / "fixes" / "v3.csv").read_text() == "stray"


@pytest.mark.parametrize("spec, message", [
    ("../etc", "must be 1-64 letters"), ("a/b", "must be 1-64 letters"), ("a b", "must be 1-64 letters"),
    ("", "must be 1-64 letters"), ("fixes@2", "give NAME .* or NAME@vK"), ("fixes@v0", "versions start at v1"),
    ("nosuch", "no label set named 'nosuch'.*labels list"), ("fixes@v9", "has no version v9 .*v1"),
])
def test_bad_and_unknown_names(home, spec, message):
    ls.save_label_set(ls.build_label_set(VOTES), "fixes")
    with pytest.raises(ls.LabelSetError, match=message):
        ls.load_label_set(spec)


def test_an_empty_set_is_refused():
    with pytest.raises(ls.LabelSetError, match="would be empty"):
        ls.save_label_set(ls.build_label_set(VOTES, min_agree=3), "fixes")


def test_apply_relabels_and_excludes_and_checks_the_given_labels():
    labels = np.arange(20) % 10
    table = ls.build_label_set(VOTES, given_labels=labels)
    new, excluded = ls.apply_label_set(labels, table)
    assert new[5] == 3 and (np.delete(new, 5) == np.delete(labels, 5)).all()
    assert np.flatnonzero(excluded).tolist() == [7, 13]
    other = labels.copy()
    other[7] = 2
    with pytest.raises(ls.LabelSetError, match="built against other training labels: image 7"):
        ls.apply_label_set(other, table)
    with pytest.raises(ls.LabelSetError, match="beyond the 10 training images"):
        ls.apply_label_set(labels[:10], table)


def test_team_table_on_both_engines(db_target):
    from cifar_mtl.stores.labelsets import LabelSetTable, VersionTaken

    table = LabelSetTable(db_target)
    try:
        assert table.schema_version() == 1 and table.latest_version("x") == 0
        table.add("x", 1, "{}", "index\n", "ann")
        with pytest.raises(VersionTaken):
            table.add("x", 1, "{}", "index\n", "bob")
        table.add("x", 2, '{"a": 1}', "rows", None)
        assert table.latest_version("x") == 2
        assert [(r["name"], r["version"]) for r in table.versions()] == [("x", 1), ("x", 2)]
        assert table.get("x", 2)["rows_csv"] == "rows" and table.get("x", 3) is None
    finally:
        table.close()


def test_a_teammates_set_is_read_from_the_team_database(tmp_path, monkeypatch):
    """Two artifacts homes, one PostgreSQL: a set built in one is listed and loaded in the other."""
    monkeypatch.setenv(DB_ENV, new_target("postgresql", None))
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    ls.save_label_set(ls.build_label_set(VOTES), "fixes", mine, built_by="ann")
    # the database allocates versions over both homes
    assert ls.save_label_set(ls.build_label_set(VOTES).head(1), "fixes", theirs)[0] == 2
    listed = ls.list_label_sets(theirs)
    assert listed["version"].tolist() == [1, 2] and listed["built_by"].iloc[0] == "ann"
    got = ls.load_label_set("fixes@v1", theirs)
    assert got["index"].tolist() == [5, 7, 13] and got.attrs["manifest"]["built_by"] == "ann"


def _review(home, *rows):
    store = ReviewStore(None)
    try:
        for index, reviewer, verdict, label in rows:
            store.set_mislabel("cv1", index, reviewer, verdict, label, split="train")
    finally:
        store.close()


def test_cli_build_list_show_export(engine_home, tmp_path, capsys):
    _review(engine_home, (5, "ann", "confirmed", 3), (5, "bob", "confirmed", 3), (7, "ann", "unsure", None))
    assert main(["labels", "build", "--name", "fixes", "--by", "ann"]) == 0
    assert "fixes@v1: 1 relabelled, 1 excluded" in capsys.readouterr().out
    assert main(["labels", "build", "--name", "fixes", "--min-agree", "2", "--reviewer", "ann",
                 "--reviewer", "bob"]) == 0
    assert "fixes@v2: 1 relabelled, 0 excluded" in capsys.readouterr().out
    assert main(["labels", "list"]) == 0
    out = capsys.readouterr().out
    assert "fixes" in out and "min_agree 2 of ann,bob" in out
    assert main(["labels", "show", "fixes@v1"]) == 0
    out = capsys.readouterr().out
    assert "built by ann" in out and "5,relabel,3,cat" in out and "7,exclude" in out
    assert main(["labels", "export", "fixes", "--out", str(tmp_path / "f.csv")]) == 0
    assert (tmp_path / "f.csv").read_text().count("\n") == 2


@pytest.mark.parametrize("argv, message", [
    (["labels", "show", "nosuch"], "no label set named 'nosuch'"),
    (["labels", "show", "../x"], "must be 1-64 letters"),
    (["labels", "build", "--name", "a/b"], "must be 1-64 letters"),
    (["labels", "build", "--name", "fixes"], "no verdicts on training images"),
    (["labels", "export", "fixes", "--out", "/nonexistent/f.csv"], "does not exist"),
])
def test_cli_errors_are_one_line(home, capsys, argv, message):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_build_says_when_the_set_is_empty(home, capsys):
    _review(home, (5, "ann", "rejected", None))
    assert main(["labels", "build", "--name", "fixes"]) != 0
    assert "would be empty" in capsys.readouterr().err
    assert main(["labels", "list"]) == 0
    assert "no label sets yet" in capsys.readouterr().out


# --- retraining on a label set ------------------------------------------------------------------

TINY = {"backbone": "airbench", "pooling": "max", "dropout": 0.0, "optimizer": "sgd", "finetune_epochs": 1,
        "batch_size": 16, "val_split": 0.2, "augment": "none", "progress_interval": 0.1, "mixed_precision": "off"}


def test_an_unknown_label_set_is_a_config_error(home, capsys):
    from cifar_mtl.config import ConfigError, make_config

    with pytest.raises(ConfigError, match="labels: no label set named 'fixes'.*labels list"):
        ls.resolve_labels(make_config({"labels": "fixes"}))
    ls.save_label_set(ls.build_label_set(VOTES), "fixes")
    ls.save_label_set(ls.build_label_set(VOTES), "fixes")
    assert ls.resolve_labels(make_config({"labels": "fixes"})).labels == "fixes@v2"
    assert ls.resolve_labels(make_config({"labels": "fixes@v1"})).labels == "fixes@v1"
    with pytest.raises(ConfigError, match="has no version v3"):
        ls.resolve_labels(make_config({"labels": "fixes@v3"}))
    assert main(["train", "--config", "cpu_fast", "--set", "labels=other"]) == 2
    err = capsys.readouterr().err
    assert "no label set named 'other'" in err and "labels list" in err


def test_training_on_a_label_set_changes_training_labels_only(home, tmp_path, monkeypatch):
    from cifar_mtl import runs
    from cifar_mtl.cifar10 import load_cifar10
    from cifar_mtl.config import make_config
    from cifar_mtl.synthetic import write_fake_cifar
    from cifar_mtl.training import fit

    data_dir = write_fake_cifar(tmp_path / "data", n_train_per_batch=12, n_test=20)
    data = load_cifar10(str(data_dir))
    rows = verdicts((3, "ann", "confirmed", int(data.y_train[3] + 1) % 10), (4, "ann", "unsure", None),
                    (8, "ann", "confirmed", int(data.y_train[8] + 2) % 10))
    ls.save_label_set(ls.build_label_set(rows, given_labels=data.y_train), "fixes", home)
    seen = {}

    def spy(config, data_, train_idx, val_idx):
        seen.update(y=data_.y_train.copy(), y_test=data_.y_test.copy(), idx=np.concatenate([train_idx, val_idx]))
        return build(config, data_, train_idx, val_idx)

    build = fit.build_datasets
    monkeypatch.setattr(fit, "build_datasets", spy)
    metrics = fit.train(make_config({**TINY, "data_dir": str(data_dir), "labels": "fixes"}), "fixed", home_dir=home)
    assert seen["y"][3] == (data.y_train[3] + 1) % 10 and seen["y"][8] == (data.y_train[8] + 2) % 10
    assert 4 not in seen["idx"] and len(seen["idx"]) == len(data.y_train) - 1
    untouched = np.setdiff1d(np.arange(len(data.y_train)), [3, 8])
    assert (seen["y"][untouched] == data.y_train[untouched]).all()
    # the test set is never changed: neither what the model sees nor the labels it is scored on
    assert (seen["y_test"] == data.y_test).all()
    assert (runs.load_predictions("fixed", home)["label"].to_numpy() == data.y_test).all()
    assert runs.load_config("fixed", home)["labels"] == "fixes@v1"
    saved = runs.load_metrics("fixed", home)
    for m in (metrics, saved):
        assert (m["label_set"], m["label_set_version"], m["relabelled"], m["excluded"]) == ("fixes", 1, 2, 1)


# --- the synthetic-noise benchmark (quick mode only) -----------------------------------------------


def test_flip_labels_is_seeded_and_always_changes_the_class():
    from bench.bench_label_noise import flip_labels, precision_recall_at

    labels = np.arange(1000) % 10
    noisy, flipped = flip_labels(labels, 0.05, seed=3)
    assert len(flipped) == 50 and (noisy[flipped] != labels[flipped]).all()
    assert (np.delete(noisy, flipped) == np.delete(labels, flipped)).all()
    again, same = flip_labels(labels, 0.05, seed=3)
    assert (again == noisy).all() and (same == flipped).all()
    assert not np.array_equal(flip_labels(labels, 0.05, seed=4)[1], flipped)
    assert precision_recall_at(np.array([flipped[0], 999 if 999 not in flipped else 998, flipped[1]]),
                               flipped, 2) == (0.5, 1 / 50)


@pytest.mark.slow  # a 2-fold cross-validation and three tiny trainings (about 1.5 minutes)
def test_noise_benchmark_quick_mode_runs_the_whole_loop(tmp_path, capsys):
    from cifar_mtl import runs
    from bench.bench_label_noise import main as bench_main

    assert bench_main(["--quick", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    figures = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith("["))
    assert figures["flipped"] == "10"  # 5% of 200 generated training images
    for key in ("precision_at_n", "recall_at_n", "accuracy_clean", "accuracy_noisy", "accuracy_cleaned"):
        assert 0.0 <= float(figures[key]) <= 1.0
    assert "mcnemar_p_cleaned_vs_noisy" in figures and "targets: recall at N >= 0.8" in out
    cleaned = runs.load_metrics("noise-cleaned", tmp_path)
    assert cleaned["label_set"] == "noise-top-n" and cleaned["relabelled"] == int(figures["set_rows"]) > 0
    assert runs.load_config("noise-noisy", tmp_path)["labels"] is None
    # all three runs were scored on the same, unchanged test labels
    tests = [runs.load_predictions(f"noise-{r}", tmp_path)["label"].to_numpy() for r in ("clean", "noisy", "cleaned")]
    assert (tests[0] == tests[1]).all() and (tests[0] == tests[2]).all()
