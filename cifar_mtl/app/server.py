"""The app's web server side: the page Streamlit sends names the server's address.

Streamlit's frontend does not know where its server is. Opened at a sub-page's
address (a shared link such as `/queue?run_id=...`), it first asks that page's path
for `_stcore/health` and `_stcore/host-config`, gets two 404s, and only then tries the
root (streamlit/streamlit#7074). The frontend skips that search when the page defines
`window.__streamlit.BACKEND_BASE_URL`, the setting Streamlit provides for pages served
by a host of their own. `ServerAddress` is an ASGI middleware for `st.App` that writes
it into every HTML page the server sends: this origin plus `server.baseUrlPath`.

Answering the probes instead is no fix: the frontend then takes the sub-page's path
for the server's and opens its websocket there.
"""

from __future__ import annotations

import json

from streamlit import config

HEAD_TAG = b"<head>"


def address_script(base_url_path: str) -> bytes:
    """The `<script>` that tells Streamlit's frontend where its server is.

    Args:
        base_url_path: Streamlit's `server.baseUrlPath` ("" or e.g. "tools/cifar").

    Returns:
        An inline script setting `window.__streamlit.BACKEND_BASE_URL` to the page's
        origin followed by the base path and a slash.
    """
    path = "/" + "/".join(part for part in base_url_path.split("/") if part)
    suffix = json.dumps(path.rstrip("/") + "/")  # a JSON string is a valid JS string literal
    # "</" would end the script element early; JSON may escape it as "<\/".
    suffix = suffix.replace("</", "<\\/")
    return (f"<script>window.__streamlit=Object.assign(window.__streamlit||{{}},"
            f"{{BACKEND_BASE_URL:window.location.origin+{suffix}}});</script>").encode()


def with_address(html: bytes, base_url_path: str) -> bytes:
    """`html` with `address_script` first in its `<head>`; unchanged when it has none."""
    return html.replace(HEAD_TAG, HEAD_TAG + address_script(base_url_path), 1)


def _wants_html(scope) -> bool:
    """Whether a request is a page load (a browser's navigation asks for text/html)."""
    accept = dict(scope.get("headers", ())).get(b"accept", b"")
    return scope["type"] == "http" and scope.get("method") == "GET" and b"text/html" in accept


class ServerAddress:
    """ASGI middleware: every HTML page served carries the server's address (see module doc).

    Only page loads are touched. They are asked for uncompressed, since the middleware
    runs outside Streamlit's gzip; scripts, styles, images and the websocket pass as
    they are.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if not _wants_html(scope):
            await self.app(scope, receive, send)
            return
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]}
        held: dict = {}

        async def send_with_address(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if headers.get(b"content-type", b"").startswith(b"text/html"):
                    held.update(start=message, body=b"")
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = with_address(held["body"], config.get_option("server.baseUrlPath") or "")
                start = held.pop("start")
                headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
                await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_with_address)
