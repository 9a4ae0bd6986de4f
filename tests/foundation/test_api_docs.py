"""/docs runs from the service's own files: no third-party host, assets served by the app, and a
Content-Security-Policy that allows exactly what the page uses (scripts from the service, nothing inline)."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from services.notification.app import create_app as notification_app
from services.notification.config import NotificationSettings
from services.proposals.app import create_app as proposals_app
from services.proposals.config import ProposalsSettings
from services.registration.app import create_app as registration_app
from services.registration.config import RegistrationSettings
from tests.support.infra import RUN_SECRETS

# No lifespan runs: nothing connects, so these URLs are never dialled.
_SETTINGS = {
    "database_url": "postgresql+asyncpg://docs:docs@127.0.0.1:1/docs",
    "amqp_url": "amqp://docs:docs@127.0.0.1:1/",
    "staff_jwt_secret": "docs-test-secret-at-least-32-bytes-long",
    "environment": "test",
    "log_json": False,
}
APPS = {
    "registration": lambda: registration_app(
        RegistrationSettings(**_SETTINGS, token_secret=RUN_SECRETS["REGISTRATION_TOKEN_SECRET"])
    ),
    "notification": lambda: notification_app(
        NotificationSettings(**_SETTINGS, address_hash_secret=RUN_SECRETS["NOTIFICATION_ADDRESS_HASH_SECRET"])
    ),
    "proposals": lambda: proposals_app(
        ProposalsSettings(**_SETTINGS, token_secret=RUN_SECRETS["PROPOSALS_TOKEN_SECRET"])
    ),
}


class _Page(HTMLParser):
    """The URLs a page loads (src, href) and whether it carries inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.other_urls: list[str] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.scripts.append(values["src"] or "")
            else:
                self._in_script = True
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values.get("href") or "")
        elif tag == "style":
            self.inline_styles += 1
        else:
            for name in ("src", "href"):
                if values.get(name):
                    self.other_urls.append(values[name] or "")
        if "style" in values or any(name.startswith("on") for name in values):
            self.inline_styles += "style" in values
            self.inline_scripts += any(name.startswith("on") for name in values)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def _csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def _same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and url.startswith("/")


@pytest.fixture(params=sorted(APPS))
async def client(request):
    app = APPS[request.param]()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def test_docs_load_nothing_from_another_host(client):
    docs = await client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    page = _Page()
    page.feed(docs.text)
    assert page.scripts and page.stylesheets
    urls = page.scripts + page.stylesheets + page.other_urls
    assert all(_same_origin(url) for url in urls), urls
    assert "//" not in docs.text.replace("<!DOCTYPE html>", ""), "an absolute URL in the docs page"
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    for url in page.scripts:
        assert "javascript" in (await client.get(url)).headers["content-type"], url
    for url in page.stylesheets:
        assert (await client.get(url)).headers["content-type"].startswith("text/css"), url


async def test_the_docs_csp_allows_the_scripts_the_page_uses_and_nothing_inline(client):
    docs = await client.get("/docs")
    page = _Page()
    page.feed(docs.text)
    csp = _csp(docs.headers["content-security-policy"])
    # Every script and stylesheet is the service's own, which 'self' allows; nothing inline, which the
    # policy would block (and must not allow).
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert page.inline_scripts == 0 and page.inline_styles == 0
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    # The UI fetches the OpenAPI document (and "Try it out" calls the API) from the service only.
    assert csp["connect-src"] == ["'self'"]
    assert not any(
        source.startswith(("http:", "https:", "*")) or "unsafe" in source
        for sources in csp.values()
        for source in sources
    ), csp


async def test_the_starter_script_points_at_this_services_openapi_and_no_validator(client):
    docs = await client.get("/docs")
    page = _Page()
    page.feed(docs.text)
    starter = (await client.get(page.scripts[-1])).text
    assert "SwaggerUIBundle(" in starter
    assert "validatorUrl: null" in starter
    assert "openapiUrl" in starter and '"openapiUrl": "/openapi.json"' in docs.text.replace("&quot;", '"')
    assert (await client.get("/openapi.json")).status_code == 200


async def test_no_redoc_and_only_the_assets_the_page_uses(client):
    assert (await client.get("/redoc")).status_code == 404
    # The bundle's demo page and its starter point at a public example API: not served.
    for name in ("index.html", "swagger-initializer.js", "oauth2-redirect.html", "..%2F__init__.py"):
        assert (await client.get(f"/docs/static/swagger-ui/{name}")).status_code == 404, name
    schema = (await client.get("/openapi.json")).json()
    assert not any(path.startswith("/docs") for path in schema["paths"])
