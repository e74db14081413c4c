"""Every page opened by its address, with the run and reviewer in it: no dialog, no error."""

from __future__ import annotations

from urllib.parse import quote, urlparse

import pytest

from cifar_mtl.app.server import page_path, with_address

from tests.browser.support import assert_clean, settle, shot

PAGES = {"runs": "Overview", "browse": "Errors", "queue": "Review", "map": "Map", "slices": "Slices",
         "suspects": "Suspected mislabels",
         "versus": "Compare runs", "csv": "Export", "jobs": "Retrain", "labelsets": "Label sets",
         "start": "Getting started"}


def test_every_page_opens_cleanly_by_address(app, page):
    url, _ = app
    for path, heading in PAGES.items():
        # single-a is not the default run, so the address must be what selects it.
        page.goto(f"{url}/{path}?run_id=single-a&reviewer=zoe")
        page.get_by_role("heading", name=heading).first.wait_for()
        settle(page)
        page.wait_for_timeout(500)  # a "Page not found" dialog arrives with the first run's messages
        assert_clean(page)
        run = page.get_by_role("combobox", name="Run under review").input_value()
        assert run.startswith("single-a · "), (path, run)
        assert page.get_by_role("textbox", name="Your name (reviewer)").input_value() == "zoe", path
        assert page.url.startswith(f"{url}/{path}?"), page.url
        shot(page, f"deep-link-{path}")


def test_a_sub_page_finds_its_server_at_the_root_without_a_search(app, page):
    # Without the server's address in the page, Streamlit's frontend asked the sub-page's
    # own path for /queue/_stcore/health and /host-config first (two 404s) on every deep
    # link and every reload (streamlit/streamlit#7074).
    url, _ = app
    asked = []
    page.on("request", lambda request: asked.append(urlparse(request.url).path))
    page.on("websocket", lambda socket: asked.append(urlparse(socket.url).path))
    page.goto(f"{url}/queue?run_id=multi-b&reviewer=zoe")
    page.get_by_role("heading", name="Review").first.wait_for()
    settle(page)
    page.reload()
    page.get_by_role("heading", name="Review").first.wait_for()
    settle(page)
    assert_clean(page)
    server = [path for path in asked if "_stcore" in path]
    assert "/_stcore/health" in server and "/_stcore/stream" in server, server
    assert all(path.startswith("/_stcore/") for path in server), server


def test_the_root_address_opens_overview_and_keeps_the_query(app, page):
    url, _ = app
    page.goto(f"{url}/?run_id=single-a&reviewer=zoe")
    page.get_by_role("heading", name="Overview").first.wait_for()
    settle(page)
    assert_clean(page)
    assert page.url == f"{url}/runs?run_id=single-a&reviewer=zoe", page.url
    assert page.get_by_role("combobox", name="Run under review").input_value().startswith("single-a · ")


def test_markdown_in_the_address_is_shown_as_text(app, page):
    # Rendered as markdown, the name would be an image that every viewer's browser fetches
    # from another host; the browser fixture fails the test on any such request.
    url, _ = app
    name = "![x](http://127.0.0.2:9/p.png)"
    page.goto(f"{url}/queue?run_id=multi-b&reviewer={quote(name)}")
    page.get_by_role("heading", name="Review").first.wait_for()
    settle(page)
    assert_clean(page)
    assert page.get_by_text(f"by {name}").count() >= 1
    assert page.locator("img[src*='127.0.0.2']").count() == 0


@pytest.mark.parametrize(("address", "request_path", "base_url_path", "server"), [
    ("/queue?run_id=a&reviewer=b", "/queue", "", "/"),
    ("/", "/", "", "/"),
    ("/tools/cifar/queue", "/tools/cifar/queue", "tools/cifar", "/tools/cifar/"),  # server.baseUrlPath
    ("/tools/cifar/", "/tools/cifar/", "tools/cifar", "/tools/cifar/"),
    ("/cifar/queue", "/queue", "", "/cifar/"),  # a proxy serves the app under /cifar/ and strips it
])
def test_the_page_script_finds_the_server_from_the_browsers_address(browser, address, request_path, base_url_path,
                                                                    server):
    # The page as the middleware writes it for `request_path`, served at `address` by a route.
    html = with_address(b"<html><head></head><body></body></html>", page_path(request_path, base_url_path))
    tab = browser.new_page()
    tab.route("http://127.0.0.1:9/**", lambda route: route.fulfill(body=html, content_type="text/html"))
    tab.goto(f"http://127.0.0.1:9{address}")
    assert tab.evaluate("window.__streamlit.BACKEND_BASE_URL") == f"http://127.0.0.1:9{server}"
