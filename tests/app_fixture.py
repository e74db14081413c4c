"""A fixture artifacts home for the app's tests and benchmark: generated runs and images.

`build_home(root)` writes, under `root`:

- `home/runs/<id>/`: complete runs with generated predictions (`synthetic.make_fake_run`),
  by default one single-task and one multitask run over the same test images;
- `data/cifar-10-batches-py/`: a generated dataset whose test labels match the runs.

`break_run` adds the bad states the app must survive: a run whose predictions file
is corrupt, and a run that is still training (no metrics yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifar_mtl.runs import CONFIG_FILE, PREDICTIONS_FILE, atomic_write_json, run_dir, write_status
from cifar_mtl.synthetic import make_fake_run, write_fake_cifar

APP = Path(__file__).resolve().parent.parent / "app.py"  # what `streamlit run` serves (st.App)
NAVIGATION = APP.parent / "navigation.py"  # the script it runs for every page: what AppTest runs

# (run id, variant, accuracy, seed); newest last, since list_runs orders by start time.
DEFAULT_RUNS = (("single-a", "single", 0.7, 1), ("multi-b", "multitask", 0.8, 2))


@dataclass
class FixtureHome:
    home: Path  # value for CIFAR_MTL_HOME
    data: Path  # value for CIFAR10_DIR
    run_ids: list[str]

    def env(self) -> dict[str, str]:
        return {"CIFAR_MTL_HOME": str(self.home), "CIFAR10_DIR": str(self.data)}


def build_home(root: str | Path, *, n: int = 200, runs=DEFAULT_RUNS, images: bool = True) -> FixtureHome:
    """Write runs of `n` test images each (and `n` matching test images when `images`)."""
    root = Path(root)
    home = root / "home"
    ids = []
    for k, (run_id, variant, accuracy, seed) in enumerate(runs):
        folder = make_fake_run(run_id, home, n=n, variant=variant, accuracy=accuracy, seed=seed)
        # Distinct start times, so "newest" is well defined whatever the clock resolution.
        write_status(folder, "succeeded", started_at=f"2026-01-0{k + 1}T10:00:00+0000")
        ids.append(run_id)
    data = root / "data"
    if images:
        data = write_fake_cifar(data, n_train_per_batch=10, n_test=n)
    return FixtureHome(home=home, data=data, run_ids=ids)


def break_run(home: Path, run_id: str, how: str) -> Path:
    """Add a bad run: `how` is "corrupt" (unreadable predictions) or "partial" (no metrics yet)."""
    if how == "corrupt":
        folder = make_fake_run(run_id, home, n=50, seed=9)
        (folder / PREDICTIONS_FILE).write_bytes(b"this is not a parquet file")
        return folder
    if how == "partial":
        folder = run_dir(run_id, home)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / CONFIG_FILE, {"variant": "multitask", "finetune_epochs": 3})
        write_status(folder, "running", pid=None)
        return folder
    raise ValueError(f"unknown breakage {how!r}; use 'corrupt' or 'partial'")
