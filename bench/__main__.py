"""Run every benchmark module and print one table (optionally JSON).

    python -m bench [--json FILE] [--quick] [--only NAME ...]

A benchmark module is `bench/bench_<name>.py` with `run(quick: bool = False) ->
list[dict]`; each dict has `name` (str), `value` (float), `unit` (str), `target`
(str, e.g. "< 50 ms") and `ok` (True, False, or None when there is no target).
A module that cannot be imported, raises, or returns malformed rows is reported as
a failed row in the table; the others still run. Exit status: 0 when every module
ran (whether or not each figure met its target), 1 when one failed, 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import numbers
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path


PREFIX = "bench_"
KEYS = ("name", "value", "unit", "target", "ok")
COLUMNS = ("module", "name", "value", "unit", "target", "ok", "machine", "date")


def machine() -> str:
    """A short description of this computer: CPU model, cores, memory, load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [cpu, f"{os.cpu_count()} cores"]
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        parts.append(f"{pages / 2**30:.0f} GiB")
    except (ValueError, OSError, AttributeError):
        pass
    return ", ".join(parts)


def load_average() -> str:
    """The 1-minute load average, or "?" where the OS does not report it."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (OSError, AttributeError):
        return "?"


def discover(package: str = "bench") -> list[str]:
    """Names (without the `bench_` prefix) of the benchmark modules in `package`, sorted."""
    pkg = importlib.import_module(package)
    found = [m.name[len(PREFIX):] for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith(PREFIX)]
    return sorted(found)


def select(available: list[str], only: list[str] | None) -> list[str]:
    """The modules `--only` asks for (with or without the prefix); ValueError names unknown ones."""
    if not only:
        return available
    wanted = [n[len(PREFIX):] if n.startswith(PREFIX) else n for n in only]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(unknown)}; available: {', '.join(available)}")
    return [n for n in available if n in wanted]


def check_rows(rows) -> list[dict]:
    """Validate what a module's `run` returned; ValueError says which row and key is wrong."""
    if not isinstance(rows, list):
        raise ValueError(f"run() returned {type(rows).__name__}; expected a list of dicts")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is {type(row).__name__}; expected a dict with keys {', '.join(KEYS)}")
        missing = [k for k in KEYS if k not in row]
        if missing:
            raise ValueError(f"row {i} ({row.get('name', '?')!r}) lacks {', '.join(missing)}")
        if not isinstance(row["value"], numbers.Real) or isinstance(row["value"], bool):
            raise ValueError(f"row {i} ({row['name']!r}): value {row['value']!r} is not a number")
        if row["ok"] not in (True, False, None):
            raise ValueError(f"row {i} ({row['name']!r}): ok {row['ok']!r} must be true, false or null")
    # NumPy scalars become plain floats and bools, so the rows can be written as JSON.
    return [{**r, "value": float(r["value"]), "ok": None if r["ok"] is None else bool(r["ok"])} for r in rows]


def run_module(name: str, quick: bool, package: str = "bench") -> tuple[list[dict], bool]:
    """Run one module; return (rows, ran). A failure becomes one row with ok False."""
    try:
        module = importlib.import_module(f"{package}.{PREFIX}{name}")
        return check_rows(module.run(quick=quick)), True
    except Exception as exc:  # a broken benchmark must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        message = f"FAILED: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        return [{"name": message, "value": math.nan, "unit": "", "target": "runs", "ok": False}], False


def run_all(names: list[str], quick: bool, package: str = "bench", log=None) -> tuple[list[dict], bool]:
    """Run `names` in order; return every row (with module, machine, date, seconds) and whether all ran."""
    host = machine()
    rows, all_ran = [], True
    for name in names:
        if log:
            log(f"running {PREFIX}{name} (load {load_average()}) ...")
        start = time.perf_counter()
        date = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        module_rows, ran = run_module(name, quick, package)
        seconds = round(time.perf_counter() - start, 1)
        all_ran = all_ran and ran
        for row in module_rows:
            rows.append({"module": name, **row, "machine": host, "date": date, "module_seconds": seconds})
        if log:
            log(f"  {PREFIX}{name}: {len(module_rows)} figures in {seconds} s")
    return rows, all_ran


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    if key == "ok":
        return {True: "yes", False: "NO", None: "-"}.get(value, str(value))
    if key == "value":
        if not isinstance(value, (int, float)) or math.isnan(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if key == "date":
        return str(value or "")[:16].replace("T", " ")
    return str(value if value is not None else "")


def format_table(rows: list[dict], columns=COLUMNS) -> str:
    """The rows as a fixed-width text table; machine and date columns are left out if absent."""
    columns = [c for c in columns if c not in ("module", "machine", "date") or any(c in r for r in rows)]
    cells = [[_cell(r, c) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    right = {"value"}
    lines = ["  ".join(c.rjust(w) if c in right else c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for line in cells:
        lines.append(
            "  ".join(v.rjust(w) if c in right else v.ljust(w) for c, v, w in zip(columns, line, widths)).rstrip()
        )
    return "\n".join(lines)


def print_table(rows: list[dict]) -> None:
    """Print a module's rows (used by each module's `__main__`)."""
    print(format_table(rows))


def to_json(rows: list[dict], quick: bool) -> dict:
    """The JSON document `--json` writes: run metadata and every row (NaN and infinities as null)."""
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    return {
        "machine": machine(),
        "load_average": load_average(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "quick": quick,
        "results": clean,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks and print one table.")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON to FILE")
    p.add_argument("--quick", action="store_true", help="few repetitions: a smoke run, noisier figures")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these modules (e.g. training memory)")
    return p


def main(argv: list[str] | None = None, package: str = "bench") -> int:
    args = _parser().parse_args(argv)
    try:
        names = select(discover(package), args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not names:
        print(f"error: no {PREFIX}*.py modules in {package}/", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows, all_ran = run_all(names, args.quick, package, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(rows))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_json(rows, args.quick), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0 if all_ran else 1


if __name__ == "__main__":
    sys.exit(main())
