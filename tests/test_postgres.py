"""PostgreSQL as the team database: `db copy` of a real SQLite database losing nothing,
the plpgsql triggers' current state, and what only PostgreSQL does (writers of
different reviewers side by side, a dropped connection replaced)."""

import sqlite3
import threading

import pytest

from cifar_mtl.cli import main
from cifar_mtl.jobs import JobRunner
from cifar_mtl.stores.copy import TABLES, CopyError, copy_sqlite_to_postgres
from cifar_mtl.stores.database import DB_ENV, DB_FILE
from cifar_mtl.stores.reviews import ReviewStore
from tests.db_engines import db_target, is_postgres, new_target, raw  # noqa: F401 (db_target: a fixture)


def _real_database(home):
    """A home database as a team leaves it: categories added, single and bulk tags, undos
    of both, notes, verdicts, and jobs in every state."""
    with ReviewStore(home / DB_FILE) as s:
        s.add_category("Bad light", "too dark", reviewer="ann")
        s.tag_many("run-a", range(200), "clutter", "ann")
        s.untag_many("run-a", range(0, 200, 3), "clutter", "ann")
        s.undo("ann")  # the bulk untag, whole
        s.tag_many("run-a", range(100, 300), "bad_light", "bob")
        s.tag("run-b", 7, "pose", "bob")
        s.toggle("run-b", 7, "pose", "bob")
        s.undo("bob")
        s.set_note("run-a", 5, "ann", "50% hidden; \"dark\"\nsecond line")
        s.set_mislabel("run-a", 6, "bob", "confirmed", 3)
        s.set_mislabel("run-a", 6, "bob", "unsure")
        s.clear_mislabel("run-b", 6, "bob")
        s.undo("bob")
    runner = JobRunner(home, autostart=False)
    for k, state in enumerate(["queued", "running", "succeeded", "failed", "cancelled"]):
        job_id = runner.submit({"seed": k}, run_id=f"job-{state}", submitted_by="ann")
        if state != "queued":
            runner._update(job_id, state=state, started_at="2026-11-25T21:03:31.000001+00:00", pid=100 + k,
                           error=None if state in ("running", "succeeded") else f"{state}: because",
                           worker="gpu-1:42", heartbeat_at="2026-11-25T21:04:00.000001+00:00")
    runner.queue.close()
    return home / DB_FILE


def _rows(target, table, columns, order):
    con = raw(target)
    try:
        return [tuple(r) for r in con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")]
    finally:
        con.close()


def test_db_copy_moves_a_real_database_losing_nothing(home, capsys):
    source = _real_database(home)
    url = new_target("postgresql", None)
    assert main(["db", "copy", "--to", url, "--home", str(home)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"copied {source} into {url}:"
    printed = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in out[1:]}
    for table, columns, order in TABLES:  # every row of every table, ids and all
        rows = _rows(source, table, columns, order)
        assert _rows(url, table, columns, order) == rows, table
        assert printed[table] == len(rows) > 0, table
    state = ("kind", "reviewer", "idx", "key", "run_id", "event_id", "at_us", "value", "suggested_label")
    rebuilt = _rows(url, "review_state", state, "kind, reviewer, idx, key")
    assert rebuilt == _rows(source, "review_state", state, "kind, reviewer, idx, key")
    assert printed["review_state"] == len(rebuilt) > 0
    con = sqlite3.connect(source)
    assert con.execute("SELECT version FROM schema_version ORDER BY component").fetchall() == \
        [tuple(r) for r in raw(url).execute("SELECT version FROM schema_version ORDER BY component")]
    con.close()

    # The copy is a working team database: the stores read it as they read the file ...
    with ReviewStore(source) as s, ReviewStore(url) as t:
        assert t.current_tags().equals(s.current_tags())
        assert t.current_notes().equals(s.current_notes())
        assert t.current_mislabels().equals(s.current_mislabels())
        assert t.history().equals(s.history())
        assert t.categories().equals(s.categories())
        # ... undo walks the copied history, and new rows follow the copied ids.
        # (bob: the unsure and confirmed verdicts, the pose tag, then the bulk tag of 200)
        assert [t.undo("bob")["count"] for _ in range(4)] == [1, 1, 1, 200]
        assert [s.undo("bob")["count"] for _ in range(4)] == [1, 1, 1, 200]
        assert t.current_tags().drop(columns="at").equals(s.current_tags().drop(columns="at"))
        assert t.history()["id"].max() == s.history()["id"].max()
    copied = JobRunner(home, autostart=False)
    assert copied.list_jobs(refresh=False)["state"].tolist()[::-1] == [
        "queued", "running", "succeeded", "failed", "cancelled"]
    assert copied.submit({}, run_id="after-copy") == 6


def test_db_copy_refuses_a_database_in_use_and_a_missing_file(home, tmp_path, capsys):
    source = _real_database(home)
    url = new_target("postgresql", None)
    with ReviewStore(url) as s:
        s.tag("r1", 1, "clutter", "eve")
    before = _rows(url, "review_events", ("id", "reviewer"), "id")
    with pytest.raises(CopyError, match="is not empty .1 review_events.*new, empty database"):
        copy_sqlite_to_postgres(source, url)
    assert _rows(url, "review_events", ("id", "reviewer"), "id") == before
    assert main(["db", "copy", "--to", url, "--from", str(tmp_path / "nope.sqlite")]) == 1
    assert "there is no database at" in capsys.readouterr().err
    assert main(["db", "copy", "--to", str(tmp_path / "x.sqlite"), "--home", str(home)]) == 1
    assert "--to must be a postgresql:// URL" in capsys.readouterr().err


def test_db_copy_reads_the_file_even_with_the_team_database_set(home, monkeypatch, capsys):
    """CIFAR_MTL_DB replaces the home's file for the stores, but the copy reads the file itself."""
    source = _real_database(home)
    url = new_target("postgresql", None)
    monkeypatch.setenv(DB_ENV, url)
    assert main(["db", "copy", "--to", url, "--home", str(home)]) == 0
    assert _rows(url, "review_events", ("id",), "id") == _rows(source, "review_events", ("id",), "id")
    with ReviewStore() as team:  # and the stores now open the copy
        assert team.path == url and len(team.history()) == len(_rows(source, "review_events", ("id",), "id"))


def test_reviewers_write_side_by_side_and_each_reviewers_writes_in_order(db_target):
    """16 threads, two per reviewer, toggling the same images: per reviewer the events
    alternate add/remove (never two adds in a row), whatever the engine."""
    store = ReviewStore(db_target)
    errors = []

    def work(reviewer):
        try:
            for _ in range(25):
                store.toggle("r1", 1, "clutter", reviewer)
        except Exception as exc:  # collected: an exception in a thread would go unseen
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"rev{k % 8}",)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    h = store.history()
    for _, events in h.groupby("reviewer"):
        actions = events.sort_values("id")["action"].tolist()
        assert actions == ["add", "remove"] * 25
    assert store.current_tags().empty
    store.close()


def test_a_dropped_connection_is_replaced(db_target):
    store = ReviewStore(db_target)
    store.tag("r1", 1, "clutter", "ann")
    if is_postgres(db_target):
        with store._use() as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        admin = raw(db_target)
        admin.execute("SELECT pg_terminate_backend(?)", (pid,))  # as a server restart would
        admin.close()
        with pytest.raises(store._db.engine.Error):
            store.tag("r1", 2, "clutter", "ann")  # the call that finds it gone fails ...
    store.tag("r1", 3, "clutter", "ann")  # ... and the next one opens a new connection
    assert store.current_tags()["index"].tolist()[-1] == 3
    store.close()

