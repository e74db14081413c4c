"""The review database: operations, undo, schema versions, concurrency, crashes."""

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from cifar_mtl.stores.database import DB_ENV, DB_FILE, engine_for
from cifar_mtl.stores.reviews import (
    CATEGORIES,
    SCHEMA_VERSION,
    VERDICTS,
    ReviewError,
    ReviewStore,
    SchemaError,
)
from tests.db_engines import db_target, is_postgres, raw  # noqa: F401 (db_target: a fixture)

# Every test taking `store` or `db_target` runs on SQLite and on PostgreSQL; the ones
# about the SQLite file itself (journal mode, foreign files) take `tmp_path`.


@pytest.fixture
def store(db_target):
    s = ReviewStore(db_target)
    yield s
    s.close()


def test_seeded_categories_and_defaults(home):
    with ReviewStore() as s:
        assert s.path == home / DB_FILE
        cats = s.categories()
        assert cats["name"].tolist() == [name for name, _ in CATEGORIES]
        assert cats["builtin"].all() and (cats["description"].str.len() > 0).all()
        assert "distinctive_features" in cats["name"].tolist()
        assert VERDICTS == ("confirmed", "rejected", "unsure")
        mode = sqlite3.connect(s.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_add_category(store):
    assert store.add_category("Bad lighting", "too dark to see", reviewer="ann") == "bad_lighting"
    cats = store.categories()
    assert cats["name"].tolist()[-1] == "bad_lighting"
    assert not cats.iloc[-1]["builtin"]
    assert store.tag("r1", 3, "bad_lighting", "ann")
    with pytest.raises(ReviewError, match="already exists"):
        store.add_category("bad lighting")
    with pytest.raises(ReviewError, match="not usable"):
        store.add_category("1st; DROP TABLE")
    with pytest.raises(ReviewError, match="empty"):
        store.add_category("  ")


def test_tag_untag_toggle(store):
    assert store.tag("r1", 5, "clutter", "ann") is True
    assert store.tag("r1", 5, "clutter", "ann") is False  # already tagged: no new event
    assert store.toggle("r1", 5, "pose", "ann") is True
    tags = store.current_tags()
    assert tags[["index", "category", "reviewer", "run_id"]].values.tolist() == [
        [5, "clutter", "ann", "r1"],
        [5, "pose", "ann", "r1"],
    ]
    assert str(tags["at"].dt.tz) == "UTC"
    assert store.toggle("r1", 5, "pose", "ann") is False
    assert store.untag("r1", 5, "clutter", "ann") is True
    assert store.untag("r1", 5, "clutter", "ann") is False
    assert store.current_tags().empty
    # Removal is recorded, not deleted.
    assert store.history()["action"].tolist() == ["add", "add", "remove", "remove"]


def test_reviewers_are_kept_apart(store):
    store.tag("r1", 7, "colour", "ann")
    store.tag("r1", 7, "colour", "bob")
    store.untag("r1", 7, "colour", "ann")
    tags = store.current_tags()
    assert tags["reviewer"].tolist() == ["bob"]
    assert store.current_tags(reviewer="ann").empty


def test_run_filter_and_indices(store):
    store.tag("r1", 1, "clutter", "ann")
    store.tag("r2", 2, "clutter", "ann")
    store.tag("r2", 3, "pose", "ann")
    assert store.current_tags(run_id="r1")["index"].tolist() == [1]
    assert store.current_tags(run_id="r2")["index"].tolist() == [2, 3]
    assert store.current_tags()["index"].tolist() == [1, 2, 3]
    assert store.current_tags(indices=[3, 1])["index"].tolist() == [1, 3]
    assert store.current_tags(indices=np.array([2]))["category"].tolist() == ["clutter"]
    # The key is the image, not the run: untagging while reviewing r2 removes r1's tag.
    store.untag("r2", 1, "clutter", "ann")
    assert store.current_tags(run_id="r1").empty


def test_tag_many(store):
    store.tag("r1", 4, "occlusion", "ann")
    assert store.tag_many("r1", [4, 5, 6, 6], "occlusion", "ann") == 2
    assert store.current_tags()["index"].tolist() == [4, 5, 6]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.tag("r1", -1, "clutter", "ann"), "outside 0..9999 \\(the test set\\)"),
        (lambda s: s.tag("r1", 10_000, "clutter", "ann"), "outside 0..9999 \\(the test set\\)"),
        (lambda s: s.tag("r1", 2.5, "clutter", "ann"), "must be an integer in 0..9999"),
        (lambda s: s.tag("r1", True, "clutter", "ann"), "must be an integer in 0..9999"),
        (lambda s: s.tag("r1", 1, "blurry", "ann"), "unknown category"),
        (lambda s: s.tag("r1", 1, "clutter", "  "), "reviewer name is empty"),
        (lambda s: s.tag("bad id!", 1, "clutter", "ann"), "invalid run id"),
        (lambda s: s.set_mislabel("r1", 1, "ann", "maybe"), "unknown verdict"),
        (lambda s: s.set_mislabel("r1", 1, "ann", "confirmed"), "needs the label"),
        (lambda s: s.set_mislabel("r1", 1, "ann", "confirmed", 10), "outside 0..9"),
        (lambda s: s.set_mislabel("r1", 1, "ann", "rejected", 3), "leave suggested_label empty"),
        (lambda s: s.set_note("r1", 1, "ann", 42), "note must be text"),
        (lambda s: s.set_note("r1", 1, "ann", "x" * 10_001), "keep it under"),
    ],
)
def test_bad_input_is_refused(store, call, message):
    with pytest.raises(ReviewError, match=message):
        call(store)
    assert store.history().empty


def test_notes(store):
    assert store.set_note("r1", 9, "ann", "dark, blurry")
    assert not store.set_note("r1", 9, "ann", "dark, blurry ")  # same after strip
    assert store.set_note("r1", 9, "ann", "actually fine")
    store.set_note("r1", 9, "bob", "clutter")
    notes = store.current_notes()
    assert notes[["reviewer", "note"]].values.tolist() == [["ann", "actually fine"], ["bob", "clutter"]]
    assert store.set_note("r1", 9, "ann", "")
    assert store.current_notes()["reviewer"].tolist() == ["bob"]
    assert store.history(reviewer="ann")["action"].tolist() == ["set", "set", "clear"]


def test_mislabels(store):
    store.set_mislabel("r1", 2, "ann", "confirmed", 3)
    store.set_mislabel("r1", 2, "bob", "unsure")
    assert not store.set_mislabel("r1", 2, "ann", "confirmed", 3)
    m = store.current_mislabels()
    assert m[["index", "reviewer", "verdict"]].values.tolist() == [[2, "ann", "confirmed"], [2, "bob", "unsure"]]
    assert m["suggested_label"].tolist()[0] == 3 and m["suggested_label"].isna().tolist()[1]
    store.set_mislabel("r1", 2, "ann", "rejected")
    assert store.current_mislabels(reviewer="ann")["verdict"].tolist() == ["rejected"]
    assert store.clear_mislabel("r1", 2, "ann")
    assert not store.clear_mislabel("r1", 2, "ann")
    assert store.current_mislabels()["reviewer"].tolist() == ["bob"]


def test_history_filters_and_order(store):
    store.tag("r1", 1, "clutter", "ann")
    store.set_note("r2", 1, "bob", "hm")
    store.set_mislabel("r1", 2, "ann", "confirmed", 0)
    h = store.history()
    assert h["id"].is_monotonic_increasing
    assert h["kind"].tolist() == ["tag", "note", "mislabel"]
    assert h["category"].tolist()[0] == "clutter" and h["note"].tolist()[1] == "hm"
    assert h["verdict"].tolist()[2] == "confirmed" and h["suggested_label"].tolist()[2] == 0
    assert store.history(run_id="r2")["reviewer"].tolist() == ["bob"]
    assert store.history(index=2)["kind"].tolist() == ["mislabel"]
    assert len(store.history(reviewer="ann")) == 2


def test_events_are_append_only(store):
    store.tag("r1", 1, "clutter", "ann")
    con, error = raw(store.path), engine_for(store.path).DatabaseError
    with pytest.raises(error, match="append-only"):
        con.execute("DELETE FROM review_events")
    with pytest.raises(error, match="append-only"):
        con.execute("UPDATE review_events SET reviewer = 'eve'")
    con.close()


def test_undo_walks_back(store):
    store.tag("r1", 1, "clutter", "ann")
    store.set_note("r1", 1, "ann", "first")
    store.set_note("r1", 1, "ann", "second")
    store.untag("r1", 1, "clutter", "ann")
    store.tag("r1", 1, "pose", "bob")  # another reviewer's work is not undone

    undone = store.undo("ann")
    assert undone["kind"] == "tag" and undone["action"] == "remove" and undone["index"] == 1
    assert store.current_tags(reviewer="ann")["category"].tolist() == ["clutter"]
    assert store.undo("ann")["note"] == "second"
    assert store.current_notes()["note"].tolist() == ["first"]
    store.undo("ann")
    assert store.current_notes().empty
    store.undo("ann")
    assert store.current_tags(reviewer="ann").empty
    assert store.undo("ann") is None
    assert store.current_tags()["reviewer"].tolist() == ["bob"]
    h = store.history(reviewer="ann")
    assert len(h) == 8 and h["undoes"].notna().sum() == 4


def test_undo_mislabel_restores_previous_verdict(store):
    store.set_mislabel("r1", 4, "ann", "unsure", 2)
    store.set_mislabel("r1", 4, "ann", "confirmed", 5)
    result = store.undo("ann")
    assert result["verdict"] == "confirmed" and result["undone_by"] > result["id"]
    m = store.current_mislabels()
    assert m["verdict"].tolist() == ["unsure"] and m["suggested_label"].tolist() == [2]


def test_undo_scoped_to_run(store):
    store.tag("r1", 1, "clutter", "ann")
    store.tag("r2", 2, "clutter", "ann")
    assert store.undo("ann", run_id="r1")["index"] == 1
    assert store.current_tags()["index"].tolist() == [2]


def test_schema_version_and_reopen(db_target):
    path = db_target
    with ReviewStore(path) as s:
        s.tag("r1", 1, "clutter", "ann")
        assert s.schema_version() == SCHEMA_VERSION
    with ReviewStore(path) as s:
        assert len(s.current_tags()) == 1
        assert len(s.categories()) == len(CATEGORIES)  # seeded once


def test_newer_schema_is_refused(db_target):
    path = db_target
    ReviewStore(path).close()
    con = raw(path)
    con.execute("UPDATE schema_version SET version = ? WHERE component = 'reviews'", (SCHEMA_VERSION + 1,))
    con.close()
    with pytest.raises(SchemaError, match=f"version {SCHEMA_VERSION + 1}, newer"):
        ReviewStore(path)


def test_other_components_share_the_file(tmp_path):
    path = tmp_path / "r.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    with ReviewStore(path) as s:
        s.tag("r1", 1, "clutter", "ann")
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SchemaError, match="cannot be used as the review database"):
        ReviewStore(path)


def test_closed_store_says_so(db_target):
    s = ReviewStore(db_target)
    s.close()
    with pytest.raises(ReviewError, match="closed"):
        s.tag("r1", 1, "clutter", "ann")


def test_threads_get_their_own_connections(store):
    errors = []

    def work(k):
        try:
            for i in range(50):
                store.tag("r1", k * 50 + i, "clutter", f"t{k}")
        except Exception as exc:  # collected: an exception in a thread would go unseen
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.current_tags()) == 200
    # The workers' threads have ended: opening a connection in a new thread drops theirs.
    t = threading.Thread(target=store.current_tags)
    t.start()
    t.join()
    assert store.open_connections() == 2  # this thread's and the last worker's


def _write_tags(path, worker, barrier, n):
    store = ReviewStore(path)
    barrier.wait()
    for i in range(n):
        store.tag("r1", (worker * n + i) % 10_000, "clutter", f"proc{worker}")
    store.close()


def test_eight_processes_lose_no_tag(db_target):
    path = db_target
    ctx = mp.get_context("fork")  # fork: no re-import of pandas in each child
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_write_tags, args=(path, w, barrier, 250)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 8
    with ReviewStore(path) as s:
        tags = s.current_tags()
        assert len(tags) == 2000
        assert tags.groupby("reviewer").size().tolist() == [250] * 8
        assert len(s.history()) == 2000


def test_forked_child_opens_its_own_connection(store):
    store.tag("r1", 1, "clutter", "parent")
    ctx = mp.get_context("fork")
    p = ctx.Process(target=lambda: store.tag("r1", 2, "clutter", "child"))
    p.start()
    p.join(timeout=60)
    assert p.exitcode == 0
    assert store.current_tags()["reviewer"].tolist() == ["parent", "child"]


WRITER = """
import sys
from cifar_mtl.stores.reviews import ReviewStore
store = ReviewStore(sys.argv[1])
i = 0
while True:
    store.tag("r1", i % 10000, "clutter", "writer-%d" % (i // 10000))
    print(i, flush=True)  # printed only after the commit returned
    i += 1
"""


def test_sigkill_mid_stream_keeps_committed_tags(db_target):
    path = db_target
    ReviewStore(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    committed = []
    for line in proc.stdout:
        committed.append(int(line))
        if len(committed) >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    committed += [int(line) for line in proc.stdout.read().split()]
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if not is_postgres(path):
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()
    with ReviewStore(path) as s:
        stored = set(s.current_tags()["index"].tolist())
    assert set(committed) <= stored
    assert len(stored) >= 300


def test_last_run_is_the_run_of_the_reviewers_latest_event(db_target):
    store = ReviewStore(db_target)
    assert store.last_run("ada") is None
    store.tag("run-a", 1, "clutter", "ada")
    store.tag("run-b", 2, "pose", "bob")
    store.set_note("run-c", 3, "ada", "odd angle")
    assert store.last_run("ada") == "run-c"
    assert store.last_run("bob") == "run-b"


# --- bulk actions and their one undo (review schema version 3) ----------------------------


def _state(store, reviewer=None) -> set:
    return set(map(tuple, store.current_tags(reviewer=reviewer)[["index", "category", "reviewer", "run_id"]]
                   .values.tolist()))


def test_bulk_tag_then_undo_restores_exactly_the_previous_state(store):
    store.tag("r1", 3, "clutter", "ann")  # already tagged before the bulk action: stays tagged
    store.tag("r0", 4, "clutter", "ann")  # ... even when tagged while reviewing another run
    store.tag("r1", 5, "pose", "ann")  # another category of a bulk-tagged image
    before = _state(store)
    assert store.tag_many("r1", [3, 4, 5, 6, 7, 7], "clutter", "ann") == 3  # 5, 6, 7 are new
    assert _state(store) == before | {(i, "clutter", "ann", "r1") for i in (5, 6, 7)}
    batch = store.history()["batch"]
    assert batch.iloc[:3].isna().all() and batch.iloc[3:].nunique() == 1 and batch.iloc[3:].notna().all()

    undone = store.undo("ann")
    assert undone["count"] == 3 and undone["index"] == 5 and undone["category"] == "clutter"
    assert undone["action"] == "add" and undone["batch"] is not None and undone["undone_by"] > undone["id"]
    assert _state(store) == before
    h = store.history()
    assert len(h) == 9 and h["undoes"].iloc[6:].tolist() == h["id"].iloc[3:6].tolist()
    assert h["batch"].iloc[6:].nunique() == 1 and h["batch"].iloc[6] != h["batch"].iloc[3]  # the undo's own batch
    # The next undo walks back to the single edits, one at a time.
    assert store.undo("ann")["count"] == 1
    assert _state(store) == before - {(5, "pose", "ann", "r1")}


def test_bulk_untag_then_undo_puts_every_tag_back(store):
    store.tag_many("r1", range(10), "occlusion", "ann")
    store.tag("r2", 20, "occlusion", "ann")
    before = _state(store)
    assert store.untag_many("r2", [0, 1, 2, 20, 30], "occlusion", "ann") == 4  # 30 was never tagged
    assert {i for i, *_ in _state(store)} == set(range(3, 10))
    assert store.untag_many("r2", [0, 1, 30], "occlusion", "ann") == 0  # nothing to do: no action recorded
    undone = store.undo("ann")
    assert undone["count"] == 4 and undone["action"] == "remove"
    assert _state(store) == before  # each key back as it was, 20 under its own run r2
    assert store.undo("ann")["count"] == 1  # the single tag of 20
    assert store.undo("ann")["count"] == 10  # the first bulk action
    assert store.current_tags().empty and store.undo("ann") is None


def test_single_and_bulk_undos_interleave_in_order(store):
    store.tag_many("r1", [1, 2, 3], "clutter", "ann")
    store.untag("r1", 2, "clutter", "ann")  # a single edit on a bulk-tagged image
    store.set_note("r1", 1, "ann", "dark")
    store.tag_many("r1", [2, 4], "clutter", "ann")
    steps = [store.undo("ann") for _ in range(5)]
    assert [(u["kind"], u["count"]) for u in steps[:4]] == [("tag", 2), ("note", 1), ("tag", 1), ("tag", 3)]
    assert steps[4] is None
    assert store.current_tags().empty and store.current_notes().empty
    after_each = []
    store.tag_many("r1", [1, 2, 3], "clutter", "ann")
    store.untag("r1", 2, "clutter", "ann")
    after_each.append({i for i, *_ in _state(store)})
    store.tag_many("r1", [2, 4], "clutter", "ann")
    store.undo("ann")  # the second bulk action only: 2 is untagged again, as before it
    assert {i for i, *_ in _state(store)} == after_each[0] == {1, 3}


def test_undo_of_bulk_actions_keeps_reviewers_apart(store):
    store.tag_many("r1", [1, 2, 3], "pose", "ann")
    store.tag_many("r1", [2, 3, 4], "pose", "bob")
    store.tag("r1", 9, "colour", "ann")
    assert store.undo("bob")["count"] == 3
    assert {i for i, *_ in _state(store, "ann")} == {1, 2, 3, 9}
    assert store.current_tags(reviewer="bob").empty
    assert store.undo("ann")["count"] == 1 and store.undo("ann")["count"] == 3
    assert store.current_tags().empty and store.undo("bob") is None


def test_bulk_undo_scoped_to_run_and_batches_are_append_only(store):
    store.tag_many("r1", [1, 2], "clutter", "ann")
    store.tag_many("r2", [3, 4], "clutter", "ann")
    assert store.undo("ann", run_id="r1")["count"] == 2
    assert store.current_tags()["index"].tolist() == [3, 4]
    con = raw(store.path)
    try:
        assert con.execute("SELECT action, size FROM review_batches ORDER BY id").fetchall() == [
            ("tag_many", 2), ("tag_many", 2), ("undo", 2)]
        for statement in ("DELETE FROM review_batches", "UPDATE review_batches SET size = 0"):
            with pytest.raises(engine_for(store.path).DatabaseError, match="append-only"):
                con.execute(statement)
    finally:
        con.close()


def test_bulk_actions_refuse_bad_input_writing_nothing(store):
    with pytest.raises(ReviewError, match="outside 0..9999"):
        store.tag_many("r1", [1, 10_000], "clutter", "ann")
    with pytest.raises(ReviewError, match="unknown category"):
        store.untag_many("r1", [1], "blurry", "ann")
    assert store.tag_many("r1", [], "clutter", "ann") == 0
    assert store.history().empty and store.undo("ann") is None


def test_team_database_replaces_the_homes_file(home, monkeypatch):
    """With CIFAR_MTL_DB set, a store asked for <home>/cifar-mtl.sqlite opens PostgreSQL."""
    from tests.postgres_server import server

    url = server().new_database()
    monkeypatch.setenv(DB_ENV, url)
    with ReviewStore() as s:
        assert s.path == url and is_postgres(s.path)
        s.tag("r1", 1, "clutter", "ann")
    with ReviewStore(home / DB_FILE) as s:  # the home's file by name: the same team database
        assert len(s.current_tags()) == 1
    assert not (home / DB_FILE).exists()
    with ReviewStore(home / "other.sqlite") as s:  # any other file is opened as given
        assert s.current_tags().empty


def test_a_bad_team_database_is_one_clear_error(home, monkeypatch):
    monkeypatch.setenv(DB_ENV, "mysql://x@y/z")
    with pytest.raises(SchemaError, match="CIFAR_MTL_DB must be a postgresql:// URL"):
        ReviewStore()
    from tests.postgres_server import server

    server()  # (skips without PostgreSQL)
    monkeypatch.setenv(DB_ENV, "postgresql://nobody:s3cret@/nodb?host=/nonexistent-socket-dir")
    with pytest.raises(SchemaError) as info:
        ReviewStore(timeout=2)
    assert "check CIFAR_MTL_DB" in str(info.value) and "s3cret" not in str(info.value)


# --- verdicts on training images (issue 16: schema version 4) ------------------------------


def test_train_verdicts_are_kept_apart_from_test_verdicts(store):
    assert store.set_mislabel("cv1", 5, "ann", "confirmed", 3)  # test image 5
    assert store.set_mislabel("cv1", 5, "ann", "confirmed", 8, split="train")  # training image 5
    assert store.set_mislabel("cv1", 49_999, "ann", "rejected", split="train")
    test = store.current_mislabels()
    train = store.current_mislabels(split="train")
    assert test[["index", "suggested_label"]].values.tolist() == [[5, 3]]
    assert train[["index", "verdict"]].values.tolist() == [[5, "confirmed"], [49_999, "rejected"]]
    assert train.loc[0, "suggested_label"] == 8
    assert not store.set_mislabel("cv1", 5, "ann", "confirmed", 8, split="train")  # nothing changed
    events = store.history(index=5)
    assert events["split"].tolist() == ["test", "train"] and events["verdict"].tolist() == ["confirmed"] * 2


def test_train_verdicts_undo_and_clear_by_reviewer(store):
    store.set_mislabel("cv1", 20_000, "ann", "confirmed", 1, split="train")
    store.set_mislabel("cv1", 20_000, "ann", "unsure", split="train")
    store.set_mislabel("cv1", 20_000, "bob", "confirmed", 2, split="train")
    undone = store.undo("ann")
    assert undone["index"] == 20_000 and undone["verdict"] == "unsure" and undone["split"] == "train"
    current = store.current_mislabels(split="train").set_index("reviewer")
    assert current.loc["ann", "verdict"] == "confirmed" and current.loc["bob", "suggested_label"] == 2
    assert store.clear_mislabel("cv1", 20_000, "bob", split="train")
    assert not store.clear_mislabel("cv1", 20_000, "bob", split="train")
    assert store.current_mislabels(split="train")["reviewer"].tolist() == ["ann"]
    assert store.current_mislabels().empty  # no test verdict was touched


def test_train_verdict_input_is_checked(store):
    with pytest.raises(ReviewError, match="outside 0..49999 \\(the training set\\)"):
        store.set_mislabel("cv1", 50_000, "ann", "confirmed", 1, split="train")
    with pytest.raises(ReviewError, match="outside 0..9999 \\(the test set\\)"):
        store.set_mislabel("cv1", 10_000, "ann", "confirmed", 1)
    with pytest.raises(ReviewError, match="unknown split 'val'"):
        store.set_mislabel("cv1", 1, "ann", "confirmed", 1, split="val")
    with pytest.raises(ReviewError, match="unknown split"):
        store.current_mislabels(split="validation")


def test_database_refuses_a_training_index_outside_its_split(db_target):
    ReviewStore(db_target).close()
    con = raw(db_target)
    try:
        for idx, kind, key in ((10_000, "tag", "clutter"), (10_000, "mislabel", ""), (3, "mislabel", "val"),
                               (50_000, "mislabel", "train")):
            with pytest.raises(Exception, match="test or train"):
                con.execute("INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action, value) "
                            "VALUES ('2026-01-01T00:00:00.000000+00:00', 'ann', 'r', ?, ?, ?, 'set', 'x')",
                            (idx, kind, key))
    finally:
        con.close()


def test_long_export_has_a_split_column(store):
    from cifar_mtl.export import review_events_frame
    from cifar_mtl.predictions import predictions_table
    from cifar_mtl.synthetic import fake_probabilities

    labels = np.arange(20) % 10
    preds = predictions_table(fake_probabilities(labels, 0.9, seed=1), labels)
    store.set_mislabel("cv1", 3, "ann", "confirmed", 5)
    store.set_mislabel("cv1", 3, "ann", "confirmed", 7, split="train")
    frame = review_events_frame(preds, store, "cv1")
    assert frame["split"].tolist() == ["test", "train"] and frame["index"].tolist() == [3, 3]
    assert frame.loc[0, "label"] == 3 and pd.isna(frame.loc[1, "label"])  # no test prediction for a training image
    assert frame["suggested_label"].tolist() == [5, 7]
