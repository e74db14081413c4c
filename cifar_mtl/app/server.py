"""The app's web server side: the page Streamlit sends says where its server is.

Streamlit's frontend does not know where its server is. Opened at a sub-page's
address (a shared link such as `/queue?run_id=...`), it first asks that page's path
for `_stcore/health` and `_stcore/host-config`, gets two 404s, and only then tries the
path above (streamlit/streamlit#7074). The frontend skips that search when the page
defines `window.__streamlit.BACKEND_BASE_URL`, the setting Streamlit provides for pages
served by a host of their own. `ServerAddress` is an ASGI middleware for `st.App` that
writes it into every HTML page load.

The server knows which page was asked for relative to its own root (the request path
less `server.baseUrlPath`); the browser knows the whole address. The script drops the
page's part from the browser's address, so the server's address comes out right at
the root, under `server.baseUrlPath`, and behind a proxy that serves the app under a
path of its own and strips it (the frontend's search found that case too).

Answering the probes instead is no fix: the frontend then takes the sub-page's path
for the server's and opens its websocket there.

`open_browser` is the app's lifespan: `streamlit run` opens a plain script in the
user's browser, but not an st.App.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

from streamlit import cli_util, config
from streamlit.web.server import server_util

HEAD_TAG = b"<head>"
# A page load is answered in full and afresh: a cached copy from before the script was
# added (same file, same ETag) must not come back as "304 Not Modified".
DROPPED_REQUEST_HEADERS = {b"accept-encoding", b"if-none-match", b"if-modified-since", b"range", b"if-range"}
DROPPED_RESPONSE_HEADERS = {b"content-length", b"etag", b"last-modified"}


def page_path(request_path: str, base_url_path: str) -> str:
    """The page part of a request path: "/tools/cifar/queue" under "tools/cifar" -> "queue"."""
    page = request_path.strip("/")
    base = base_url_path.strip("/")
    if base and (page == base or page.startswith(base + "/")):
        page = page[len(base):].strip("/")
    return page


def _js_string(text: str) -> str:
    """`text` as a JavaScript string literal that cannot end or comment out a script element."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def address_script(page: str) -> bytes:
    """The `<script>` that tells Streamlit's frontend where its server is.

    Args:
        page: the page part of the request (`page_path`), "" at the server's root.

    Returns:
        An inline script setting `window.__streamlit.BACKEND_BASE_URL` to the browser's
        address less the trailing `/page`, with a final slash.
    """
    return ("<script>(function(){var page=" + _js_string(page) + ",path=location.pathname.replace(/\\/+$/,'');"
            "if(page&&path.slice(-page.length-1)==='/'+page)path=path.slice(0,-page.length-1);"
            "window.__streamlit=Object.assign(window.__streamlit||{},"
            "{BACKEND_BASE_URL:location.origin+path+'/'});})();</script>").encode()


def with_address(html: bytes, page: str) -> bytes:
    """`html` with `address_script(page)` first in its `<head>`; unchanged when it has none."""
    return html.replace(HEAD_TAG, HEAD_TAG + address_script(page), 1)


def _wants_html(scope) -> bool:
    """Whether a request is a page load (a browser's navigation asks for text/html)."""
    accept = dict(scope.get("headers", ())).get(b"accept", b"")
    return scope["type"] == "http" and scope.get("method") == "GET" and b"text/html" in accept


class ServerAddress:
    """ASGI middleware: every HTML page served carries the server's address (see module doc).

    Only page loads are touched, and asked for in full and uncompressed (the middleware
    runs outside Streamlit's gzip); scripts, styles, images and the websocket pass as
    they are.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if not _wants_html(scope):
            await self.app(scope, receive, send)
            return
        page = page_path(scope.get("path", ""), config.get_option("server.baseUrlPath") or "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in DROPPED_REQUEST_HEADERS]
        held: dict = {}

        async def send_with_address(message):
            if message["type"] == "http.response.start":
                if dict(message.get("headers", ())).get(b"content-type", b"").startswith(b"text/html"):
                    held.update(start=message, body=b"")
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = with_address(held["body"], page)
                start = held.pop("start")
                kept = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in DROPPED_RESPONSE_HEADERS]
                await send({**start, "headers": kept + [(b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app({**scope, "headers": headers}, receive, send_with_address)


def app_url() -> str | None:
    """The address `streamlit run` would open for this server; None on a unix socket."""
    if config.is_manually_set("browser.serverAddress"):
        host = config.get_option("browser.serverAddress")
    elif config.is_manually_set("server.address"):
        host = config.get_option("server.address")
        if host.startswith("unix://"):
            return None
        host = server_util.get_display_address(host)
    else:
        host = "localhost"
    return server_util.get_url(host)


@asynccontextmanager
async def open_browser(app):
    """st.App lifespan: open the app in the user's browser once the server runs, unless headless."""
    url = None if config.get_option("server.headless") else app_url()
    if url:
        asyncio.get_running_loop().call_soon(cli_util.open_browser, url)
    yield
