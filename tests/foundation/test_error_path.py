"""Issue 21, item 7: the error path. An unexpected exception is a 500 problem+json that still carries the
security headers and the correlation id; a malformed Content-Length is a 413, not a crash."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.http import RequestContextMiddleware, install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("not for the client")

    @app.post("/echo")
    async def echo() -> dict:
        return {}

    app.add_middleware(RequestContextMiddleware, service="test", max_body_bytes=1024)
    return app


async def test_an_unexpected_error_is_a_500_with_the_security_headers():
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/boom", headers={"X-Correlation-ID": "abc-123"})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-correlation-id"] == "abc-123"
    assert "not for the client" not in answer.text


async def test_a_content_length_of_non_ascii_digits_is_a_413():
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", "\xb2".encode("latin-1")), (b"host", b"test")],
        "client": ("192.0.2.1", 1234),
        "server": ("test", 80),
    }
    await _app()(scope, receive, send)
    assert sent[0]["status"] == 413
