"""The benchmark entry point (`python -m bench`) on small fake bench modules, and the
benchmarks' own helpers that need no training (ratios, call order, child peak memory)."""

import json
import math
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from bench import __main__ as entry
from bench.bench_memory import run_child
from bench.bench_training import CallTimer, abba, alternate, steady_seconds, summarize

GOOD = '''
def run(quick=False):
    return [
        {"name": "fast thing", "value": 12.5, "unit": "ms", "target": "< 50 ms", "ok": True},
        {"name": "quick" if quick else "full", "value": 3, "unit": "x", "target": ">= 4", "ok": False},
        {"name": "informative", "value": 1234.5, "unit": "img/s", "target": "-", "ok": None},
    ]
'''
NUMPY = '''
import numpy as np


def run(quick=False):
    return [{"name": "np", "value": np.float32(2.5), "unit": "s", "target": "< 3 s", "ok": np.bool_(True)}]
'''
BROKEN = '''
def run(quick=False):
    raise RuntimeError("boom: the fixture is missing")
'''
MALFORMED = '''
def run(quick=False):
    return [{"name": "no unit", "value": 1.0, "target": "-", "ok": None}]
'''
UNIMPORTABLE = "import no_such_module_for_bench_tests\n"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Writes a package of fake bench modules; returns a function (modules dict) -> package name."""

    def make(modules: dict) -> str:
        name = f"fakebench_{uuid.uuid4().hex[:8]}"
        folder = tmp_path / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "helper.py").write_text("def run(quick=False):\n    raise AssertionError('not a bench module')\n")
        for module, source in modules.items():
            (folder / f"bench_{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        return name

    return make


def test_table_lists_every_row_with_machine_and_date(fake_package, capsys):
    package = fake_package({"good": GOOD})
    assert entry.main([], package=package) == 0
    out = capsys.readouterr().out
    header, rule, *lines = out.strip().splitlines()
    assert header.split() == ["module", "name", "value", "unit", "target", "ok", "machine", "date"]
    assert len(lines) == 3 and set(rule) <= {"-", " "}
    assert "fast thing" in lines[0] and "12.5" in lines[0] and "yes" in lines[0]
    assert "full" in lines[1] and " NO " in lines[1]
    assert "1,234" in lines[2] and entry.machine() in lines[2]
    # values line up in one right-aligned column
    assert len({line.index("ms") for line in lines[:1]} | {header.index("unit")}) == 1


def test_quick_flag_reaches_run(fake_package, capsys):
    package = fake_package({"good": GOOD})
    entry.main(["--quick"], package=package)
    assert "quick" in capsys.readouterr().out


def test_failing_modules_are_reported_not_raised(fake_package, capsys, tmp_path):
    package = fake_package({"a_good": GOOD, "broken": BROKEN, "malformed": MALFORMED, "unimportable": UNIMPORTABLE})
    out_file = tmp_path / "out" / "bench.json"
    assert entry.main(["--json", str(out_file)], package=package) == 1
    captured = capsys.readouterr()
    assert "FAILED: RuntimeError: boom: the fixture is missing" in captured.out
    assert "FAILED: ValueError: row 0 ('no unit') lacks unit" in captured.out
    assert "FAILED: ModuleNotFoundError" in captured.out
    assert "fast thing" in captured.out  # the good module's figures are still there
    assert "Traceback" in captured.err  # the failure's details go to stderr

    doc = json.loads(out_file.read_text())
    assert doc["quick"] is False and doc["machine"] == entry.machine()
    by_module = {}
    for row in doc["results"]:
        assert set(entry.COLUMNS) <= set(row)
        by_module.setdefault(row["module"], []).append(row)
    assert sorted(by_module) == ["a_good", "broken", "malformed", "unimportable"]
    assert len(by_module["a_good"]) == 3 and by_module["a_good"][0]["value"] == 12.5
    assert by_module["a_good"][2]["ok"] is None and by_module["a_good"][1]["ok"] is False
    broken = by_module["broken"][0]
    assert broken["ok"] is False and broken["value"] is None  # NaN is written as null


def test_only_selects_modules_with_or_without_prefix(fake_package, capsys):
    package = fake_package({"good": GOOD, "broken": BROKEN})
    assert entry.main(["--only", "bench_good"], package=package) == 0
    out = capsys.readouterr().out
    assert "fast thing" in out and "FAILED" not in out


def test_unknown_only_name_exits_2_naming_the_choices(fake_package, capsys):
    package = fake_package({"good": GOOD, "broken": BROKEN})
    assert entry.main(["--only", "nope"], package=package) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark nope" in err and "broken, good" in err


def test_discover_finds_bench_modules_only(fake_package):
    package = fake_package({"zeta": GOOD, "alpha": GOOD})
    assert entry.discover(package) == ["alpha", "zeta"]
    assert {"training", "memory"} <= set(entry.discover("bench"))


@pytest.mark.parametrize(
    "rows, message",
    [
        ({"name": "x"}, "expected a list"),
        (["x"], "row 0 is str"),
        ([{"name": "x", "value": "1", "unit": "", "target": "-", "ok": None}], "is not a number"),
        ([{"name": "x", "value": 1, "unit": "", "target": "-", "ok": "yes"}], "must be true, false or null"),
    ],
)
def test_check_rows_names_the_problem(rows, message):
    with pytest.raises(ValueError, match=message):
        entry.check_rows(rows)


def test_numpy_scalars_are_written_as_plain_json(fake_package, tmp_path, capsys):
    package = fake_package({"np": NUMPY})
    out_file = tmp_path / "np.json"
    assert entry.main(["--json", str(out_file)], package=package) == 0
    [row] = json.loads(out_file.read_text())["results"]
    assert row["value"] == 2.5 and row["ok"] is True


def test_format_table_without_run_columns():
    text = entry.format_table([{"name": "n", "value": math.nan, "unit": "s", "target": "-", "ok": None}])
    header, _, line = text.splitlines()
    assert header.split() == ["name", "value", "unit", "target", "ok"]
    assert line.split() == ["n", "-", "s", "-", "-"]


def test_alternation_and_ratio():
    assert abba(2) == ["A", "B", "B", "A", "A", "B", "B", "A"]
    calls = []

    def side(name, rate):
        def call():
            calls.append(name)
            return rate * 2.0, 2.0  # (amount, seconds)

        return call

    blocks = alternate(side("A", 90.0), side("B", 100.0), 3)
    assert "".join(calls) == "ABBA" * 3
    result = summarize(blocks)
    assert result["path"] == pytest.approx(90.0) and result["bare"] == pytest.approx(100.0)
    assert result["ratio"] == pytest.approx(0.9) and result["spread"] == "0.90-0.90"


def test_steady_seconds_leaves_out_the_first_steps():
    assert steady_seconds([1.0, 3.0, 4.0, 5.5], skip=2) == (2.5, 2)
    with pytest.raises(ValueError, match="raise steps"):
        steady_seconds([1.0, 2.0], skip=2)


def test_call_timer_counts_calls_and_keeps_results():
    class Thing:
        def work(self, x):
            return x * 2

    thing = Thing()
    timer = CallTimer(thing, "work")
    assert thing.work(3) == 6 and thing.work(4) == 8
    assert timer.calls == 2 and timer.seconds >= 0.0


def test_child_peak_memory_is_the_childs_own(tmp_path):
    parent_ballast = b"p" * (400 * 2**20)  # resident here; a forked child must not report it
    small_code, small = run_child([sys.executable, "-c", "pass"], {}, tmp_path / "small.log")
    big_code, big = run_child([sys.executable, "-c", "b = b'x' * (300 * 2**20)"], {}, tmp_path / "big.log")
    del parent_ballast
    assert small_code == 0 and big_code == 0
    assert small < 100
    assert 300 <= big < small + 350  # the 300 MiB it wrote, plus the interpreter


def test_child_exit_code_and_timeout(tmp_path):
    code, _ = run_child([sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"], {}, tmp_path / "c.log")
    assert code == 3 and (tmp_path / "c.log").read_text().strip() == "bye"
    with pytest.raises(TimeoutError, match="ran past"):
        run_child([sys.executable, "-c", "import time; time.sleep(30)"], {}, tmp_path / "t.log", timeout=0.5)


def test_entry_point_runs_as_a_module():
    """`python -m bench --help` works from the project root (no benchmark is run)."""
    root = Path(entry.__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=60,
                            cwd=root)
    assert result.returncode == 0 and "--only" in result.stdout and "--json" in result.stdout


def test_fast_bench_lists_recorded_airbench_runs_only(tmp_path):
    from bench.bench_fast import recorded_rows

    for run, backbone, seconds, accuracy in [("fast-a", "airbench", 1800.0, 0.935), ("slow", "resnet9", 60.0, 0.8),
                                             ("fast-b", "airbench", 4000.0, 0.91)]:
        folder = tmp_path / run
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"backbone": backbone, "seconds": seconds, "accuracy": accuracy}))
        (folder / "config.json").write_text(json.dumps({"variant": "single", "finetune_epochs": 12}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    rows = recorded_rows(tmp_path)
    assert [r["name"].split()[2].rstrip(":") for r in rows] == ["fast-a", "fast-a", "fast-b", "fast-b"]
    assert [(r["value"], r["ok"]) for r in rows] == [(30.0, True), (93.5, True), (4000 / 60, False), (91.0, False)]
