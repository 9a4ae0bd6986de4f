"""Issue 21, item 8c: with STAFF_JWT_JWKS_URL, an anonymous request with an unknown ``kid`` must not make
the service fetch the key set again: at most one fetch per interval (successful or not), concurrent
requests share one fetch, an unknown kid after a recent fetch is a 401 without fetching. Against a real
HTTP server that counts the fetches."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.auth import TokenVerifier
from shared.http import Problem
from shared.settings import ServiceSettings


class JwksServer:
    def __init__(self) -> None:
        self.fetches = 0
        self.failing = False
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.fetches += 1
                if server.failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps({"keys": [server.jwk(kid) for kid in server.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"

    def jwk(self, kid: str) -> dict:
        public = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**public, "kid": kid, "alg": "RS256", "use": "sig"}

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self, kid: str, signer: str | None = None) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": "staff.a",
            "roles": ["staff"],
            "iss": "mitwirkung-test",
            "aud": "mitwirkung",
            "iat": now,
            "exp": now + timedelta(minutes=5),
        }
        key = self.keys[signer or kid]
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.add_key("k1")
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def verifier(url: str, **kwargs) -> TokenVerifier:
    settings = ServiceSettings(
        staff_jwt_jwks_url=url, staff_jwt_issuer="mitwirkung-test", staff_jwt_audience="mitwirkung"
    )
    return TokenVerifier(settings, **kwargs)


async def refused(check: TokenVerifier, token: str) -> int:
    with pytest.raises(Problem) as answer:
        await check.verify(token)
    return answer.value.status


async def test_unknown_kids_do_not_fetch_the_key_set_again(jwks):
    check = verifier(jwks.url)
    assert (await check.verify(jwks.token("k1"))).subject == "staff.a"
    assert jwks.fetches == 1
    jwks.add_key("forger")
    for _ in range(25):
        kid = uuid.uuid4().hex
        token = jwt.encode({"sub": "x"}, jwks.keys["forger"], algorithm="RS256", headers={"kid": kid})
        assert await refused(check, token) == 401
    assert jwks.fetches == 1  # an unknown kid right after a fetch is refused without fetching
    assert (await check.verify(jwks.token("k1"))).subject == "staff.a"
    assert jwks.fetches == 1


async def test_concurrent_first_requests_share_one_fetch(jwks):
    check = verifier(jwks.url)
    tokens = [jwks.token("k1") for _ in range(10)] + [
        jwt.encode({"sub": "x"}, jwks.keys["k1"], algorithm="RS256", headers={"kid": uuid.uuid4().hex})
        for _ in range(10)
    ]
    results = await asyncio.gather(*(check.verify(t) for t in tokens), return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 10
    assert jwks.fetches == 1


async def test_a_failing_key_server_is_not_asked_on_every_request(jwks):
    jwks.failing = True
    check = verifier(jwks.url)
    for _ in range(10):
        assert await refused(check, jwks.token("k1")) == 401
    assert jwks.fetches == 1


async def test_a_rotated_key_is_fetched_after_the_interval(jwks):
    check = verifier(jwks.url, jwks_refetch_seconds=0.5)
    assert (await check.verify(jwks.token("k1"))).subject == "staff.a"
    jwks.add_key("k2")
    assert await refused(check, jwks.token("k2")) == 401  # just fetched: not again yet
    assert jwks.fetches == 1
    time.sleep(0.6)
    assert (await check.verify(jwks.token("k2"))).subject == "staff.a"
    assert jwks.fetches == 2
