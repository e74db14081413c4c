"""What the benchmark modules share: timing a call, the row every figure is, printing rows,
and putting environment variables back.

A row is the dict `bench.__main__` collects: `name`, `value`, `unit`, `target` ("< 1 s",
or "-" without one) and `ok` (True, False, or None without a target).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time


def timed(fn) -> float:
    """Seconds one call of `fn()` takes (wall time)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn, repeats: int) -> float:
    """The median of `repeats` timed calls of `fn()`, in seconds."""
    return statistics.median(timed(fn) for _ in range(repeats))


def row(name: str, value: float, unit: str, limit: float | None = None) -> dict:
    """A figure with the target `value < limit` (both in `unit`); reported, not judged,
    when `limit` is None."""
    if limit is None:
        return {"name": name, "value": value, "unit": unit, "target": "-", "ok": None}
    return {"name": name, "value": value, "unit": unit, "target": f"< {limit:g} {unit}",
            "ok": bool(value < limit)}


def ms_row(name: str, seconds: float, limit_ms: float | None) -> dict:
    """A time measured in `seconds`, shown in milliseconds (one decimal), its target
    `< limit_ms` ms; no target when `limit_ms` is None."""
    ms = seconds * 1e3
    return {"name": name, "value": round(ms, 1), "unit": "ms",
            "target": "-" if limit_ms is None else f"< {limit_ms:g} ms",
            "ok": None if limit_ms is None else bool(ms < limit_ms)}


def print_table(rows: list[dict]) -> None:
    """Rows as a table with a header: value (3 decimals), unit, target, ok (yes, NO, -)."""
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'value':>10}  unit  {'target':<10}  ok")
    for r in rows:
        ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        print(f"{r['name']:<{width}}  {r['value']:>10.3f}  {r['unit']:<4}  {r['target']:<10}  {ok}")


def print_ms_rows(rows: list[dict]) -> None:
    """`ms_row` rows, one a line: value (one decimal), unit, target, and ok or TOO SLOW."""
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        verdict = {None: "", True: "ok", False: "TOO SLOW"}[r["ok"]]
        print(f"{r['name']:<{width}}  {r['value']:>9.1f} {r['unit']:<3} {r['target']:<10} {verdict}")


@contextlib.contextmanager
def restored_environ(*names: str):
    """The `with` block may set or unset the environment variables `names`: each gets its
    value from before the block back at exit (unset again if it was unset)."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
