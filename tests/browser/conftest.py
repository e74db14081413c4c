"""The browser suite's fixtures: `streamlit run app.py` on a fixture home, and chromium tabs.

Every tab records the requests it makes: a test fails when any leaves 127.0.0.1, when a
request fails, or when a page shows an exception,
an unexpected error box or a dialog (`support.assert_clean`).
"""

from __future__ import annotations

import os

import pytest

from cifar_mtl.cifar10 import load_cifar10
from cifar_mtl.runs import load_predictions, run_dir
from tests.app_fixture import build_home
from tests.evidence_fixture import write_evidence
from tests.label_loop_fixture import add_crossval_run
from tests.browser import support

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.skipif(
                not support.CHROMIUM.exists(),
                reason=f"no chromium at {support.CHROMIUM}; install Debian's chromium or set CHROMIUM"))


@pytest.fixture
def app(tmp_path, request):
    """(base url, FixtureHome): a running app over a fresh home of two 200-image runs (or as many
    as the test's `images` marker says); the multitask run (multi-b) has evidence files, the
    single-task one (single-a) none."""
    marker = request.node.get_closest_marker("images")
    fx = build_home(tmp_path, n=marker.args[0] if marker else 200)
    train_labels = load_cifar10(str(fx.data), allow_download=False).y_train
    write_evidence(run_dir("multi-b", fx.home), load_predictions("multi-b", fx.home), train_labels)
    with support.running_app(fx.env()) as url:
        yield url, fx


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(support.CHROMIUM), args=support.CHROMIUM_ARGS, headless=True)
        context = b.new_context(viewport={"width": 1500, "height": 2000}, accept_downloads=True)
        recorder = support.Requests()
        context.on("request", recorder.on_request)
        context.on("requestfailed", recorder.on_failed)
        context.on("response", recorder.on_response)
        context.recorder = recorder
        yield context
        b.close()
        recorder.assert_local()


@pytest.fixture
def page(browser):
    tab = browser.new_page()
    tab.set_default_timeout(support.WAIT_MS)
    return tab


@pytest.fixture
def crossval_run(app):
    """(run id, suspects): a finished cross-validation run in the app's home
    (`tests.label_loop_fixture.add_crossval_run`)."""
    return add_crossval_run(app[1])
