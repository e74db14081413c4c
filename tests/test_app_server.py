"""The middleware that writes the server's address into the pages Streamlit sends (app.py).

Driven as an ASGI server drives it: a scope, then the messages of a stand-in app. That
Streamlit's frontend then asks only the root is the browser suite's to show
(tests/browser/test_deep_links.py).
"""

from __future__ import annotations

import asyncio
import gzip

from cifar_mtl.app.server import ServerAddress, address_script, with_address

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


def test_the_script_sets_the_backend_address_to_this_origin_and_base_path():
    assert b"BACKEND_BASE_URL:window.location.origin+\"/\"" in address_script("")
    assert b"window.location.origin+\"/tools/cifar/\"" in address_script("/tools/cifar/")
    # Whatever the base path holds, the script element cannot be ended early.
    assert b"</script>" not in address_script("</script><b>")[:-len(b"</script>")]


def test_a_page_gets_the_script_first_in_its_head_and_other_html_is_left_alone():
    assert with_address(PAGE, "").startswith(b"<!doctype html><html><head><script>window.__streamlit=")
    assert with_address(b"<p>no head</p>", "") == b"<p>no head</p>"


def test_a_page_load_is_rewritten_with_a_matching_length_even_in_chunks():
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(PAGE)).encode())]
    seen, sent = _serve([(b"accept", b"text/html,*/*"), (b"accept-encoding", b"gzip")], headers,
                        [PAGE[:20], PAGE[20:]])
    assert b"accept-encoding" not in seen  # asked uncompressed: the middleware runs outside the gzip
    start, body = sent
    assert body["body"] == with_address(PAGE, "")
    assert dict(start["headers"])[b"content-length"] == str(len(body["body"])).encode()
    assert [k for k, _ in start["headers"]].count(b"content-length") == 1


def test_scripts_and_fetches_pass_untouched_and_stay_compressed():
    js = gzip.compress(b"console.log(1)")
    headers = [(b"content-type", b"text/javascript"), (b"content-encoding", b"gzip")]
    seen, sent = _serve([(b"accept", b"*/*"), (b"accept-encoding", b"gzip")], headers, [js])
    assert seen[b"accept-encoding"] == b"gzip"
    assert sent[1]["body"] == js and sent[0]["headers"] == headers


def test_a_head_request_is_left_alone():
    headers = [(b"content-type", b"text/html"), (b"content-length", str(len(PAGE)).encode())]
    _, sent = _serve([(b"accept", b"text/html")], headers, [b""], method="HEAD")
    assert sent[0]["headers"] == headers and sent[1]["body"] == b""
