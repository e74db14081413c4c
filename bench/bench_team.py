"""The team database under concurrent writers (issue 17): 16 writer processes x 250
tags each, on SQLite and on PostgreSQL, every tag a committed write; figures: tags
lost (must be 0) and the tag-write latency p50 and p99 as each writer saw it; then,
on each engine, a bulk tag of 1,000 images and its one undo (each < 1 s).

Each writer is a reviewer of its own (as a team is), tagging its 250 images one
committed `ReviewStore.tag` at a time after a common start. SQLite runs one writer at
a time (the file's write lock); PostgreSQL runs writers of different reviewers side
by side. PostgreSQL is a throwaway local server (`stores.localserver`: no fsync, so
its figures leave out the disk flush a real server pays), unless CIFAR_MTL_BENCH_DB
names a database to use (it must be empty). On a 2-core machine the 16 writers
mostly wait for a core: the latencies measure that contention as much as the engines.

    python -m bench.bench_team [--quick]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_reviews import bulk_seconds
from bench.timing import print_table, row

WRITERS, TAGS = 16, 250
RUN_ID = "bench-team"


def _writer(target, worker: int, n: int, barrier, out) -> None:
    from cifar_mtl.stores.reviews import ReviewStore

    store = ReviewStore(target)
    store.categories()  # connected and migrated before the clock starts
    barrier.wait()
    seconds = []
    for i in range(n):
        start = time.perf_counter()
        store.tag(RUN_ID, (worker * n + i) % 10_000, "clutter", f"writer{worker:02d}")
        seconds.append(time.perf_counter() - start)
    store.close()
    out.put(seconds)


def measure(target, writers: int = WRITERS, tags: int = TAGS) -> dict:
    """Run `writers` processes of `tags` tags each on `target`; lost tags, latencies, wall time."""
    from cifar_mtl.stores.reviews import ReviewStore

    ReviewStore(target).close()  # the schema made once, outside the race
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(target, w, tags, barrier, out)) for w in range(writers)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    latencies = np.array([s for _ in procs for s in out.get(timeout=600)])
    wall = time.perf_counter() - start
    for p in procs:
        p.join(timeout=60)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"writer exit codes {[p.exitcode for p in procs]}")
    with ReviewStore(target) as store:
        stored = len(store.current_tags(run_id=RUN_ID))
        events = len(store.history(run_id=RUN_ID))
    expected = writers * tags
    return {"lost": expected - stored, "extra_events": events - expected, "p50_ms": np.percentile(latencies, 50) * 1e3,
            "p99_ms": np.percentile(latencies, 99) * 1e3, "wall_s": wall, "tags": expected}


def _rows(engine: str, m: dict) -> list[dict]:
    label = f"{engine}, {WRITERS} writers x {TAGS} tags"
    return [
        {"name": f"{label}: tags lost ({m['tags']:,} committed)", "value": float(m["lost"]), "unit": "tags",
         "target": "= 0", "ok": m["lost"] == 0 and m["extra_events"] == 0},
        row(f"{label}: tag write p50", m["p50_ms"], "ms"),
        row(f"{label}: tag write p99", m["p99_ms"], "ms"),
        row(f"{label}: wall time, all writers", m["wall_s"], "s"),
    ]


def bulk_rows(target, engine: str) -> list[dict]:
    """A bulk tag of 1,000 images and its one undo (issue 15: each < 1 s), median of 5."""
    from cifar_mtl.stores.reviews import ReviewStore

    with ReviewStore(target) as store:
        tag, undo = bulk_seconds(store, RUN_ID, list(range(1_000)), "pose", repeats=5)
    return [row(f"{engine}: bulk tag of 1,000 images (one action)", tag, "s", 1),
            row(f"{engine}: its undo (1,000 events reverted)", undo, "s", 1)]


def run(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-team-") as tmp:
        rows += _rows("SQLite", measure(Path(tmp) / "team.sqlite"))
        rows += bulk_rows(Path(tmp) / "team.sqlite", "SQLite")
    url = os.environ.get("CIFAR_MTL_BENCH_DB")
    server = None
    if not url:
        from cifar_mtl.stores.localserver import Server, find_binary

        if not (find_binary("initdb") and find_binary("postgres")):
            rows.append(row("PostgreSQL: not installed (apt-get install -y postgresql)", float("nan"), "-"))
            return rows
        server = Server()
        url = server.new_database()
    try:
        rows += _rows("PostgreSQL", measure(url))
        rows += bulk_rows(url, "PostgreSQL")
    finally:
        if server is not None:
            server.stop()
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv[1:]))
