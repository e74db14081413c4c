"""The middleware that writes the server's address into the pages Streamlit sends (app.py).

Driven as an ASGI server drives it: a scope, then the messages of a stand-in app; and
through `streamlit run app.py` itself. What the script computes in a browser, and that
Streamlit's frontend then asks only the root, is the browser suite's to show
(tests/browser/test_deep_links.py).
"""

from __future__ import annotations

import asyncio
import gzip
import urllib.request

import pytest

from cifar_mtl.app import server as app_server
from cifar_mtl.app.server import ServerAddress, address_script, page_path, with_address
from tests.browser.support import running_app

PAGE = b"<!doctype html><html><head><title>x</title></head><body></body></html>"


def _serve(scope_headers, start_headers, chunks, method="GET"):
    """Run ServerAddress over a stand-in app; return (the headers it saw, the messages sent)."""
    seen, sent = {}, []

    async def inner(scope, receive, send):
        seen.update(scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    async def receive():
        return {"type": "http.request"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/queue", "headers": scope_headers}
    asyncio.run(ServerAddress(inner)(scope, receive, send))
    return seen, sent


@pytest.mark.parametrize(("path", "base", "page"), [
    ("/queue", "", "queue"), ("/", "", ""), ("/tools/cifar/queue", "tools/cifar", "queue"),
    ("/tools/cifar/", "/tools/cifar/", ""), ("/tools/cifarx/queue", "tools/cifar", "tools/cifarx/queue"),
])
def test_the_page_part_of_a_request_is_its_path_below_the_base_url_path(path, base, page):
    assert page_path(path, base) == page


@pytest.mark.parametrize("page", ["</script><b>", "<!--<script>", "a&b>c"])
def test_no_page_name_can_end_or_comment_out_the_script(page):
    body = address_script(page)[len(b"<script>"):-len(b"</script>")]
    assert b"<" not in body  # neither "</script" nor "<!--" inside the element
    literal = body.split(b"var page=")[1].split(b",path=")[0]
    assert literal.startswith(b'"') and b">" not in literal and b"&" not in literal


def test_a_page_gets_the_script_first_in_its_head_and_other_html_is_left_alone():
    assert with_address(PAGE, "queue").startswith(b"<!doctype html><html><head><script>(function(){var page=\"queue\"")
    assert b"BACKEND_BASE_URL" in with_address(PAGE, "")
    assert with_address(b"<p>no head</p>", "") == b"<p>no head</p>"


def test_a_page_load_is_rewritten_with_a_matching_length_even_in_chunks():
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(PAGE)).encode()),
               (b"etag", b'"abc"'), (b"last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT")]
    seen, sent = _serve([(b"accept", b"text/html,*/*"), (b"accept-encoding", b"gzip"), (b"if-none-match", b'"abc"'),
                         (b"range", b"bytes=0-9")], headers, [PAGE[:20], PAGE[20:]])
    # Asked in full, uncompressed (the middleware runs outside the gzip) and afresh: a copy
    # cached before the script was added has the same ETag.
    assert not {b"accept-encoding", b"if-none-match", b"range"} & set(seen)
    start, body = sent
    assert body["body"] == with_address(PAGE, "queue")
    assert dict(start["headers"])[b"content-length"] == str(len(body["body"])).encode()
    assert [k for k, _ in start["headers"]].count(b"content-length") == 1
    assert not {b"etag", b"last-modified"} & set(dict(start["headers"]))


def test_scripts_and_fetches_pass_untouched_and_stay_compressed():
    js = gzip.compress(b"console.log(1)")
    headers = [(b"content-type", b"text/javascript"), (b"content-encoding", b"gzip")]
    seen, sent = _serve([(b"accept", b"*/*"), (b"accept-encoding", b"gzip")], headers, [js])
    assert seen[b"accept-encoding"] == b"gzip"
    assert sent[1]["body"] == js and sent[0]["headers"] == headers


def test_a_page_load_answered_without_html_passes_untouched():
    headers = [(b"location", b"/queue")]
    _, sent = _serve([(b"accept", b"text/html")], headers, [b""])
    assert sent == [{"type": "http.response.start", "status": 200, "headers": headers},
                    {"type": "http.response.body", "body": b"", "more_body": False}]


def test_a_head_request_is_left_alone():
    headers = [(b"content-type", b"text/html"), (b"content-length", str(len(PAGE)).encode())]
    _, sent = _serve([(b"accept", b"text/html")], headers, [b""], method="HEAD")
    assert sent[0]["headers"] == headers and sent[1]["body"] == b""


@pytest.mark.parametrize("headless", [False, True])
def test_the_app_opens_in_the_browser_unless_headless(monkeypatch, headless):
    opened = []
    options = {"server.headless": headless, "server.address": "127.0.0.1", "browser.serverPort": 8765,
               "server.baseUrlPath": "", "server.sslCertFile": None, "global.developmentMode": False}
    monkeypatch.setattr(app_server.config, "get_option", options.get)
    monkeypatch.setattr(app_server.config, "is_manually_set", lambda key: key == "server.address")
    monkeypatch.setattr(app_server.cli_util, "open_browser", opened.append)

    async def start():
        async with app_server.open_browser(None):
            await asyncio.sleep(0)  # the server runs: the call scheduled at startup is made

    asyncio.run(start())
    assert opened == ([] if headless else ["http://127.0.0.1:8765"])


def test_streamlit_run_app_py_serves_pages_with_the_address(tmp_path):
    # app.py must stay an st.App with the middleware: AppTest runs navigation.py and would not notice.
    with running_app({"CIFAR_MTL_HOME": str(tmp_path)}) as url:
        for extra in ({}, {"If-None-Match": "*"}):
            request = urllib.request.Request(f"{url}/queue?reviewer=ada", headers={"Accept": "text/html", **extra})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
                assert b'var page="queue"' in response.read()
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=30) as response:
            assert b"BACKEND_BASE_URL" not in response.read()
