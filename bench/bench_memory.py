"""Peak memory (resident set, MiB) of a short training run and of the app on 10,000-image runs.

Each figure is the `ru_maxrss` of one child process, read with `os.wait4` by a
small wrapper process (see `WRAPPER`), so nothing else is counted:

- training: `python -m cifar_mtl train` with `configs/cpu_reference.json` (batch 128,
  multitask, from scratch) on a stratified subset for one epoch, then its
  predictions for the test set (10,000 images: CIFAR-10 from `CIFAR10_DIR` when set,
  else a generated dataset of that size);
- app: every page of `navigation.py` rendered once with Streamlit's AppTest against a
  generated home with a single-task and a multitask run of 10,000 test images each
  and their 10,000 generated images (the pages' caches, thumbnails, cleanlab and the
  comparison all loaded). AppTest runs the scripts without the web server, which
  adds a few tens of MiB in `streamlit run`.

Targets: both fit an 8 GB laptop at once: training < 4 GiB, app < 1 GiB.

    python -m bench.bench_memory [--quick]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from cifar_mtl.config import CONFIG_DIR


ROOT = Path(__file__).resolve().parent.parent
CONFIG = CONFIG_DIR / "cpu_reference.json"
N_IMAGES = 10_000
TRAIN_LIMIT_MIB = 4096
APP_LIMIT_MIB = 1024
CHILD_TIMEOUT = 900  # seconds; a short run takes about a minute on 2 busy cores
APP_CHILD = "import sys; from bench.bench_memory import app_child; sys.exit(app_child())"
IMPORT_CHILD = "import tensorflow, keras; from cifar_mtl.training import fit"


# Runs argv[2:] and writes "<ru_maxrss KiB> <exit code>" to argv[1]. Linux adds the
# RSS a process had before exec() to its ru_maxrss, and a child forked from this
# (maybe large) process starts with all of it; forked from this small wrapper
# instead, the measured command's figure is its own.
WRAPPER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_child(args: list[str], env: dict, log_path: Path, timeout: float = CHILD_TIMEOUT) -> tuple[int, float]:
    """Run `args` with output to `log_path`; return (exit code, peak RSS of that process in MiB).

    Raises TimeoutError (after killing it) when it runs past `timeout` seconds.
    """
    result = log_path.with_suffix(".peak")
    result.unlink(missing_ok=True)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", WRAPPER, str(result), *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT,
                                start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the wrapper's own session: it and the measured command
        proc.wait()
        raise TimeoutError(f"{' '.join(args[:4])} ran past {timeout:g} s; see {log_path}") from None
    if not result.exists():
        raise RuntimeError(f"the memory wrapper exited {proc.returncode} without a figure; see {log_path}")
    kib, code = result.read_text().split()
    return int(code), int(kib) / 1024  # Linux reports KiB


def _tail(path: Path, lines: int = 5, containing: str = "") -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join([line for line in text if containing in line][-lines:])


def training_peak(tmp: Path, quick: bool) -> tuple[float, str]:
    """Peak MiB of a short `python -m cifar_mtl train`; returns (MiB, what was run)."""
    from cifar_mtl.cifar10 import resolve_source
    from cifar_mtl.synthetic import write_fake_cifar

    env = dict(os.environ, CIFAR_MTL_HOME=str(tmp / "home"), TF_CPP_MIN_LOG_LEVEL="2")
    source = resolve_source()
    if source is None:
        source = str(write_fake_cifar(tmp / "data", n_train_per_batch=1_000, n_test=N_IMAGES))
        env["CIFAR10_DIR"] = source
    subset = 512 if quick else 2_048
    sets = [f"train_subset={subset}", "finetune_epochs=1", "val_split=0.02", "weights=none"]
    args = [sys.executable, "-m", "cifar_mtl", "train", "--config", str(CONFIG), "--run-id", "memory",
            "--no-progress-bar"]
    for item in sets:
        args += ["--set", item]
    log = tmp / "train.log"
    code, mib = run_child(args, env, log)
    if code != 0:
        raise RuntimeError(f"training child exited {code}: {_tail(log)}")
    data = "CIFAR-10" if os.environ.get("CIFAR10_DIR") else "generated data"
    return mib, f"cpu_reference config, {subset:,} training images, 1 epoch, {N_IMAGES:,} test predictions, {data}"


def import_peak(tmp: Path) -> float:
    """Peak MiB of a process that only imports TensorFlow, Keras and the trainer: the fixed share."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    code, mib = run_child([sys.executable, "-c", IMPORT_CHILD], env, tmp / "import.log")
    if code != 0:
        raise RuntimeError(f"importing tensorflow failed (exit {code}): {_tail(tmp / 'import.log')}")
    return mib


def app_peak(tmp: Path) -> tuple[float, int, str]:
    """Peak MiB of every app page rendered once on 10,000-image runs; (MiB, exit code, log tail)."""
    from tests.app_fixture import build_home

    fixture = build_home(tmp / "app", n=N_IMAGES)
    env = dict(os.environ, **fixture.env())
    log = tmp / "app.log"
    code, mib = run_child([sys.executable, "-c", APP_CHILD], env, log)
    return mib, code, _tail(log, containing="failed") or _tail(log)


def app_child() -> int:
    """In the child: render every page of the app once; print each, return 1 on a page error."""
    from streamlit.testing.v1 import AppTest

    from tests.app_fixture import NAVIGATION

    at = AppTest.from_file(str(NAVIGATION), default_timeout=300)
    at.query_params["reviewer"] = "bench"
    at.run()
    failed = []
    for page in sorted((ROOT / "views").glob("*.py")):
        at.switch_page(f"views/{page.name}").run()
        if at.exception:
            failed.append(page.stem)
            print(f"page {page.stem} failed: {at.exception[0].value}", flush=True)
        else:
            print(f"page {page.stem} rendered", flush=True)
    return 1 if failed else 0


def _row(name: str, mib: float, limit: float, ok: bool) -> dict:
    return {"name": name, "value": round(mib, 1), "unit": "MiB", "target": f"< {limit:g} MiB", "ok": ok}


def run(quick: bool = False) -> list[dict]:
    """Peak RSS of the training run and of the app; one dict per figure (name, value, unit, target, ok)."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tmp = Path(tmp)
        base_mib = import_peak(tmp)
        train_mib, what = training_peak(tmp, quick)
        app_mib, code, tail = app_peak(tmp)
    rows = [
        {"name": "peak RSS of importing tensorflow + keras + cifar_mtl.training only (the fixed share)",
         "value": round(base_mib, 1), "unit": "MiB", "target": "-", "ok": None},
        _row(f"peak RSS of `python -m cifar_mtl train` ({what})", train_mib, TRAIN_LIMIT_MIB,
             train_mib < TRAIN_LIMIT_MIB),
    ]
    name = f"peak RSS of the app, every page once on two {N_IMAGES:,}-image runs (AppTest)"
    if code != 0:  # the figure still stands, but a page that failed loaded less than it should
        name += f" [pages failed: {tail}]"
    rows.append(_row(name, app_mib, APP_LIMIT_MIB, code == 0 and app_mib < APP_LIMIT_MIB))
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv[1:]))
