"""Review store hardening (issues 12 and 13): a store shared by many threads, the
mislabel that changes nothing, foreign files, the version-2 current-state table and
its migration, and crashes mid-write."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from cifar_mtl.stores import reviews
from cifar_mtl.stores.database import engine_for, now
from cifar_mtl.stores.reviews import SCHEMA_VERSION, ReviewError, ReviewStore, SchemaError
from tests.db_engines import db_target, is_postgres, raw  # noqa: F401 (db_target: a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The current state as version 1 derived it: the latest event per key, when active.
LATEST_ACTIVE = (
    "SELECT e.kind, e.reviewer, e.idx, e.key, e.run_id, e.value, e.suggested_label "
    "FROM review_events e JOIN (SELECT MAX(id) AS id FROM review_events "
    "GROUP BY kind, reviewer, idx, key) m ON e.id = m.id WHERE e.action IN ('add', 'set')"
)
STATE = "SELECT kind, reviewer, idx, key, run_id, value, suggested_label FROM review_state"


@pytest.fixture
def store(db_target):
    """On SQLite and on PostgreSQL (tests of the SQLite file itself take tmp_path)."""
    s = ReviewStore(db_target)
    yield s
    s.close()


def _state_matches_events(path) -> None:
    con = raw(path)
    try:
        assert sorted(con.execute(STATE).fetchall()) == sorted(con.execute(LATEST_ACTIVE).fetchall())
    finally:
        con.close()


# --- one store, many threads (issue 12) ------------------------------------------------


def test_one_store_shared_by_many_threads(store):
    """Waves of 16 threads (Streamlit's thread per rerun) tag and read through one store."""
    errors, waves, per_thread = [], 3, 8

    def work(wave, k):
        try:
            name = f"w{wave}t{k}"
            for i in range(per_thread):
                store.tag("r1", (wave * 16 + k) * per_thread + i, "clutter", name)
                store.current_tags(reviewer=name, indices=[i])
                store.current_notes(reviewer=name)
            assert len(store.current_tags(reviewer=name)) == per_thread
        except Exception as exc:  # collected: an exception in a thread would go unseen
            errors.append(exc)

    for wave in range(waves):
        threads = [threading.Thread(target=work, args=(wave, k)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Bounded: this thread's, the live ones' and at most one wave of dead ones.
        assert store.open_connections() <= 1 + 16
    assert errors == []
    assert len(store.current_tags()) == waves * 16 * per_thread
    t = threading.Thread(target=store.categories)
    t.start()
    t.join()
    assert store.open_connections() <= 2  # a new thread's connection pruned every dead one


def test_close_never_closes_a_connection_in_use(store):
    """close() from one thread leaves another thread's running call its connection."""
    inside, closed, result = threading.Event(), threading.Event(), {}

    def reader():
        with store._use() as conn:
            inside.set()
            closed.wait(10)
            result["during"] = conn.execute("SELECT COUNT(*) FROM review_events").fetchone()
        try:
            conn.execute("SELECT 1")
        except engine_for(store.path).Error:
            result["after"] = "closed"

    t = threading.Thread(target=reader)
    t.start()
    assert inside.wait(10)
    store.close()
    closed.set()
    t.join()
    assert result == {"during": (0,), "after": "closed"}
    assert store.open_connections() == 0
    with pytest.raises(ReviewError, match="closed"):
        store.current_tags()


# --- mislabels (issue 12) --------------------------------------------------------------


def test_confirming_the_label_the_image_has_is_refused(store):
    with pytest.raises(ReviewError, match="already has label 3 .cat.; pick the label .* or reject"):
        store.set_mislabel("r1", 7, "ann", "confirmed", 3, given_label=3)
    assert store.current_mislabels().empty
    assert store.set_mislabel("r1", 7, "ann", "confirmed", 5, given_label=3)
    assert store.set_mislabel("r1", 7, "ann", "unsure", 3, given_label=3)  # unsure may name it
    assert store.set_mislabel("r1", 7, "ann", "rejected", given_label=3)
    assert store.set_mislabel("r1", 8, "ann", "confirmed", 3)  # old call without given_label
    with pytest.raises(ReviewError, match="given label 12 is outside"):
        store.set_mislabel("r1", 7, "ann", "confirmed", 3, given_label=12)


# --- foreign files (issue 13 #9) -------------------------------------------------------


@pytest.mark.parametrize("version", [1, SCHEMA_VERSION])
def test_foreign_file_claiming_the_schema_is_refused(tmp_path, version):
    path = tmp_path / "reviews.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES ('reviews', ?)", (version,))
    con.execute("CREATE TABLE review_events (id INTEGER PRIMARY KEY, at TEXT)")
    con.commit()
    con.close()
    with pytest.raises(SchemaError) as info:
        ReviewStore(path)
    message = str(info.value)
    assert str(path) in message and f"version {version}" in message
    assert "table categories" in message and "column review_events.reviewer" in message
    assert "Move the file aside" in message
    # Refused before anything was written: the file is as it was.
    con = sqlite3.connect(path)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(version,)]
    con.close()


def test_missing_trigger_is_refused(tmp_path):
    path = tmp_path / "reviews.sqlite"
    ReviewStore(path).close()
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER review_state_set")
    con.close()
    with pytest.raises(SchemaError, match="lacks trigger review_state_set"):
        ReviewStore(path)


# --- the current-state table (issue 13 #12) --------------------------------------------


def test_state_follows_every_kind_of_write(store):
    rng = random.Random(0)
    cats = store.category_names()[:3]
    for _ in range(300):
        who, i, cat = rng.choice(["ann", "bob"]), rng.randrange(20), rng.choice(cats)
        op = rng.randrange(8)
        if op == 7:
            store.untag_many("r1", [i, i + 1, i + 3], cat, who)
        elif op == 0:
            store.tag("r1", i, cat, who)
        elif op == 1:
            store.untag("r2", i, cat, who)
        elif op == 2:
            store.toggle("r1", i, cat, who)
        elif op == 3:
            store.tag_many("r2", [i, i + 1, i + 2], cat, who)
        elif op == 4:
            store.set_note("r1", i, who, rng.choice(["", "dark", "blurry"]))
        elif op == 5:
            store.set_mislabel("r1", i, who, "confirmed", rng.randrange(10))
        else:
            store.undo(who)
    _state_matches_events(store.path)
    h = store.history()
    tags = store.current_tags()
    # `at` is the latest event's time to the microsecond.
    latest = h[h["kind"] == "tag"].groupby(["index", "category", "reviewer"])["at"].max()
    assert (tags.set_index(["index", "category", "reviewer"])["at"] == latest.reindex(
        tags.set_index(["index", "category", "reviewer"]).index)).all()
    ordered = tags.sort_values(["index", "category", "reviewer"]).reset_index(drop=True)
    assert tags.equals(ordered)
    assert len(store.current_tags(run_id="r2")) == (tags["run_id"] == "r2").sum()


def test_version_1_file_is_migrated_without_loss(tmp_path):
    path = tmp_path / "reviews.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("BEGIN")
    reviews._migration_1(con)
    con.execute("INSERT INTO schema_version VALUES ('reviews', 1)")
    events = [  # (reviewer, run, idx, kind, key, action, value, label)
        ("ann", "r1", 1, "tag", "clutter", "add", None, None),
        ("ann", "r1", 1, "tag", "pose", "add", None, None),
        ("ann", "r2", 1, "tag", "pose", "remove", None, None),
        ("bob", "r1", 2, "note", "", "set", "dark", None),
        ("bob", "r1", 3, "mislabel", "", "set", "confirmed", 4),
        ("bob", "r2", 3, "mislabel", "", "clear", None, None),
        ("bob", "r2", 3, "mislabel", "", "set", "unsure", None),
    ]
    for e in events:
        con.execute(
            "INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action, value, suggested_label) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (now(),) + e)
    con.execute("COMMIT")
    con.close()
    with ReviewStore(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.current_tags()[["index", "category"]].values.tolist() == [[1, "clutter"]]
        assert s.current_notes()["note"].tolist() == ["dark"]
        assert s.current_mislabels()[["verdict", "run_id"]].values.tolist() == [["unsure", "r2"]]
        assert len(s.history()) == len(events)
        assert s.undo("ann")["category"] == "pose"  # undo still walks the old events
        assert sorted(s.current_tags()["category"]) == ["clutter", "pose"]
    _state_matches_events(path)


def test_version_2_file_is_migrated_and_its_events_undo_one_by_one(tmp_path):
    """Events from before bulk actions had batches stay single edits (batch NULL)."""
    path = tmp_path / "reviews.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("BEGIN")
    reviews._migration_1(con)
    reviews._migration_2(con)
    con.execute("INSERT INTO schema_version VALUES ('reviews', 2)")
    for i in (1, 2, 3):  # a version-2 tag_many: three plain events
        con.execute("INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action) "
                    "VALUES (?, 'ann', 'r1', ?, 'tag', 'clutter', 'add')", (now(), i))
    con.execute("COMMIT")
    con.close()
    with ReviewStore(path) as s:
        assert s.schema_version() == SCHEMA_VERSION == 4
        assert s.history()["batch"].isna().all()
        assert s.undo("ann")["count"] == 1
        assert s.current_tags()["index"].tolist() == [1, 2]
        assert s.tag_many("r1", [5, 6], "clutter", "ann") == 2
        assert s.undo("ann")["count"] == 2
    _state_matches_events(path)


# --- crashes (issue 13) -------------------------------------------------------------------

WRITER = """
import sys
from cifar_mtl.stores.reviews import ReviewStore
store = ReviewStore(sys.argv[1])
i = int(sys.argv[2])
while True:
    store.tag("r1", i % 10000, "clutter", "writer-%d" % (i // 10000))
    print(i, flush=True)  # printed only after the commit returned
    i += 1
"""


def test_repeated_sigkill_loses_nothing_committed(db_target):
    """A writer killed three times mid-stream: every reported commit is stored, at most one more."""
    path = db_target
    ReviewStore(path).close()
    committed, start = 0, 0
    for stop_after in (150, 40, 220):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        seen = []
        for line in proc.stdout:
            seen.append(int(line))
            if len(seen) >= stop_after:
                break
        proc.send_signal(signal.SIGKILL)
        seen += [int(line) for line in proc.stdout.read().split()]
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        committed += len(seen)
        con = raw(path)
        if not is_postgres(path):
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = con.execute("SELECT COUNT(*) FROM review_events").fetchone()[0]
        con.close()
        # The kill may land between a commit and its print: one more, never fewer.
        assert committed <= stored <= committed + 1
        # The next writer starts past any tag this one may have committed unreported.
        committed, start = stored, (seen[-1] if seen else start) + 2
    _state_matches_events(path)
    with ReviewStore(path) as s:
        assert len(s.current_tags()) == committed
