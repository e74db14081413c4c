"""Shared fixtures: an isolated artifacts home, the app's fixture home (`fx`), tiny generated
CIFAR-10 files, a job runner
that cleans up after itself, and `wait_for` (import it: `from tests.conftest import wait_for`)."""

import os
import time

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty artifacts home, set as CIFAR_MTL_HOME for the test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("CIFAR_MTL_HOME", str(path))
    return path


@pytest.fixture
def fx(tmp_path, monkeypatch):
    """The app's fixture home (`tests.app_fixture.build_home`): a single-task and a multitask
    run of 200 images and matching images, set as CIFAR_MTL_HOME and CIFAR10_DIR."""
    from tests.app_fixture import build_home

    fixture = build_home(tmp_path, n=200)
    for key, value in fixture.env().items():
        monkeypatch.setenv(key, value)
    return fixture


@pytest.fixture
def fake_cifar_dir(tmp_path):
    """A `cifar-10-batches-py` folder with 5 x 20 training and 20 test images."""
    from cifar_mtl.synthetic import write_fake_cifar

    return write_fake_cifar(tmp_path / "data", n_train_per_batch=20, n_test=20)


# --- waiting on background work ---------------------------------------------------------------

WAIT_S = 900  # tiny trainings and workers share two cores with other people's work


def wait_for(predicate, timeout=WAIT_S, what="condition"):
    """Poll `predicate()` every half second until it is truthy and return its value; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def runner(home, request):
    """A job runner on the test's home, leaving no worker or supervisor behind.

    It starts its supervisor on submit unless the test module sets `RUNNER_AUTOSTART = False`.
    """
    from cifar_mtl.jobs import JobRunner

    r = JobRunner(home, autostart=getattr(request.module, "RUNNER_AUTOSTART", True))
    yield r
    stop_jobs(r)


def stop_jobs(runner) -> None:
    """Cancel every queued or running job of `runner` and wait for its supervisor to exit.

    A test that reads the queue through the command line or a page starts a supervisor
    for any queued job; with CIFAR10_DIR set (as in CI) its worker would train for real
    long after the test."""
    for job_id in runner.list_jobs(refresh=False).query("state in ['queued', 'running']")["id"]:
        runner.cancel(int(job_id), grace=2)
    wait_for(lambda: not runner.supervisor_running(), timeout=30, what="the supervisor to exit")
