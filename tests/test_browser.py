"""End to end in a real browser: `streamlit run app.py` driven by Playwright with Debian's chromium.

Opens Errors, tags the image in the detail view with the keyboard, reloads, checks the
tag is still there, and downloads the export CSV. A screenshot of every visited page
goes to test-output/ (git-ignored). Skips with a reason when no chromium is found.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cifar_mtl.analysis import confusion_matrix
from cifar_mtl.labels import CLASS_NAMES
from cifar_mtl.runs import load_predictions
from tests.app_fixture import APP, build_home

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
OUT = APP.parent / "test-output"
REVIEWER = "e2e"
WAIT_MS = 30_000

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}; install Debian's chromium or set CHROMIUM"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f} s")


@pytest.fixture
def app_url(tmp_path):
    """A running `streamlit run app.py` on a free local port, over a fixture home."""
    fx = build_home(tmp_path, n=200)
    port = free_port()
    env = {**os.environ, **fx.env(), "PYTHONPATH": str(APP.parent)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=APP.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url, fx
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def page():
    OUT.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1500, "height": 2200}, accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        yield tab
        browser.close()


def settle(page) -> None:
    """Wait until the script run is over (Streamlit shows a status widget while running)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)  # charts draw after the script run ends


def shot(page, name: str) -> None:
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


def open_page(page, title: str, heading: str | None = None) -> None:
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=heading or title).first.wait_for()
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0, f"{title} shows a traceback"


def tag_button(page, category: str):
    # .first: Streamlit draws a hidden twin of a button with a shortcut, to measure it.
    return page.locator("[data-testid^='stBaseButton-']").filter(has_text=category).first


def most_confused(fx) -> tuple[int, int]:
    """(true, predicted) class of the run's most frequent mistake."""
    cm = confusion_matrix(load_predictions("multi-b", fx.home)).to_numpy().copy()
    np.fill_diagonal(cm, 0)
    return tuple(int(v) for v in np.unravel_index(cm.argmax(), cm.shape))


def click_cell(page, true_name: str, pred_name: str) -> None:
    """Click the centre of a confusion-matrix cell, placed with plotly's own axes."""
    x, y = page.evaluate(
        """([t, p]) => {
            const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
            const fl = gd._fullLayout, box = gd.getBoundingClientRect();
            return [box.left + fl._size.l + fl.xaxis.d2p(p), box.top + fl._size.t + fl.yaxis.d2p(t)];
        }""",
        [true_name, pred_name],
    )
    page.mouse.click(x, y)


def test_tag_with_the_keyboard_survives_a_reload_and_is_exported(app_url, page):
    url, fx = app_url
    page.goto(f"{url}/?reviewer={REVIEWER}")
    page.get_by_role("heading", name="Overview").wait_for()
    settle(page)
    shot(page, "1-overview")

    open_page(page, "Errors")
    caption = page.get_by_text(re.compile(r"^#\d+ · ")).first
    caption.wait_for()
    index = int(re.match(r"#(\d+)", caption.inner_text()).group(1))
    button = tag_button(page, "clutter")
    assert button.get_attribute("data-testid") == "stBaseButton-secondary"
    shot(page, "2-errors")

    page.get_by_role("heading", name="Errors").click()  # focus the page, not an input
    page.keyboard.press("1")  # 1 = the first category, clutter
    page.wait_for_selector("[data-testid='stBaseButton-primary']:has-text('clutter')")
    settle(page)
    from cifar_mtl.reviews import ReviewStore

    tags = ReviewStore(fx.home / "reviews.sqlite").current_tags()
    assert tags[["index", "category", "reviewer"]].values.tolist() == [[index, "clutter", REVIEWER]]
    shot(page, "3-errors-tagged")

    page.reload()
    page.get_by_role("heading", name="Errors").wait_for()
    settle(page)
    expect = playwright_api.expect
    expect(tag_button(page, "clutter")).to_have_attribute("data-testid", "stBaseButton-primary")
    expect(page.get_by_text(re.compile(rf"^#{index} · ")).first).to_be_visible()
    shot(page, "4-errors-after-reload")

    # clicking a confusion cell shows that true/predicted pair only
    true, pred = most_confused(fx)
    click_cell(page, CLASS_NAMES[true], CLASS_NAMES[pred])
    pair = f"· {CLASS_NAMES[true]} → {CLASS_NAMES[pred]} ·"
    expect(page.get_by_text(re.compile(r"^#\d+ · ")).first).to_contain_text(pair)
    settle(page)
    captions = page.get_by_text(re.compile(r"^#\d+ · ")).all_inner_texts()
    assert captions and all(pair in c for c in captions), captions
    shot(page, "5-errors-confusion-cell")

    open_page(page, "Review")
    shot(page, "6-review")
    open_page(page, "Mislabels", "Suspected mislabels")
    shot(page, "7-mislabels")
    open_page(page, "Compare", "Compare runs")
    shot(page, "8-compare")

    open_page(page, "Export")
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile("Download CSV")).click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(int(r["index"]), r["clutter"], r["reviewers"]) for r in rows] == [(index, "1", REVIEWER)]
    settle(page)
    shot(page, "9-export")
    assert list((fx.home / "exports").glob("multi-b-errors-*.csv")), "a copy is kept under the artifacts home"
