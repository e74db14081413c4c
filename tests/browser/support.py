"""Helpers for driving the app in chromium the way a reviewer does: keys, clicks, waits."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tests.app_fixture import APP

CHROMIUM = Path(os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
OUT = APP.parent / "test-output"
WAIT_MS = 30_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# An image of a script run that a newer run has replaced is dropped by Streamlit's media
# store before the browser asks for it; what a reviewer sees is checked instead: every
# image on the page once the run is over (`assert_clean`).
SUPERSEDED_MEDIA = re.compile(r"^/media/[0-9a-f]+\.(png|jpg)$")


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


@contextlib.contextmanager
def running_app(env: dict[str, str]):
    """`streamlit run app.py` on a free port with `env` added to this process's; yields its base url."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=APP.parent, env={**os.environ, "PYTHONPATH": str(APP.parent), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


class Requests:
    """Every request a browser context makes: outside hosts and failures are kept."""

    def __init__(self):
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.count = 0

    def on_request(self, request) -> None:
        self.count += 1
        parsed = urlparse(request.url)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname not in LOCAL_HOSTS:
            self.outside.append(request.url)

    def on_failed(self, request) -> None:
        # A download's request or a page closed mid-load reports "net::ERR_ABORTED".
        if "ERR_ABORTED" not in (request.failure or ""):
            self.failed.append(f"{request.url} ({request.failure})")

    def on_response(self, response) -> None:
        path = urlparse(response.url).path
        if response.status >= 400 and not (response.status == 404 and SUPERSEDED_MEDIA.match(path)):
            self.failed.append(f"{response.url} ({response.status})")

    def assert_local(self) -> None:
        assert self.count, "no request was recorded at all"
        assert not self.outside, f"requests left 127.0.0.1: {self.outside}"
        assert not self.failed, f"requests failed: {self.failed}"


def wait_for(condition, timeout: float = 30.0, what: str = "a condition"):
    """Poll `condition()` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def settle(page) -> None:
    """Wait until the script run is over (Streamlit marks the app while a run is going)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
    page.wait_for_timeout(400)  # fragments and charts draw just after the run ends


def assert_clean(page, allowed_errors: tuple[str, ...] = ()) -> None:
    """No exception box, no dialog, and no error box but those containing `allowed_errors`."""
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']").first.inner_text()
    broken = page.evaluate("""() => [...document.querySelectorAll("[data-testid='stMain'] img")]
        .filter(i => i.complete && i.naturalWidth === 0).map(i => i.src)""")
    assert not broken, f"images that did not load: {broken}"
    dialogs = page.locator("[role='dialog']")
    assert dialogs.count() == 0, f"unexpected dialog: {dialogs.first.inner_text()}"
    for text in page.locator("[data-testid='stAlertContentError']").all_inner_texts():
        assert any(a in text for a in allowed_errors), f"error box: {text}"


def goto(page, url: str, heading: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for()
    settle(page)
    assert_clean(page)


def open_page(page, title: str, heading: str | None = None) -> None:
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=heading or title).first.wait_for()
    settle(page)
    assert_clean(page)


def press(page, key: str) -> None:
    """A key press with the focus on the page, not in a text field."""
    page.keyboard.press(key)


def button(page, text: str):
    # .first: Streamlit draws a hidden twin of a button with a shortcut, to measure it.
    return page.locator("[data-testid^='stBaseButton-']").filter(has_text=text).first


def shot(page, name: str) -> None:
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


def choose(page, label: str, option, *, scope=None) -> None:
    """Pick `option` (text, or a compiled pattern) in the select box labelled `label`."""
    (scope or page).get_by_role("combobox", name=label).first.click()
    exact = None if isinstance(option, re.Pattern) else True
    page.get_by_role("option", name=option, exact=exact).first.click()
    settle(page)


def keyed(page, key: str):
    """The element a page created with `key=...` (Streamlit marks it with class st-key-KEY)."""
    return page.locator(f".st-key-{key}").first


def focus_page(page) -> None:
    """Click an empty spot of the page so that keys go to the app's shortcuts."""
    page.locator("h1").first.click()


def image_index(page, *, detail: bool = False) -> int:
    """Test index of the first image's '#index · ...' caption; with `detail`, the last one
    (on Errors the detail view comes after the grid)."""
    captions = page.get_by_text(re.compile(r"^#\d+ · "))
    captions.first.wait_for()
    caption = captions.last if detail else captions.first
    return int(re.match(r"#(\d+)", caption.inner_text()).group(1))
