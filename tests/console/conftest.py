"""The whole system for the console's tests: a real OpenID provider (oidc-provider-mock, a Flask app in a
thread, with users whose claims a test sets), the console and the three services behind real HTTP servers
(uvicorn) on free local ports. The services verify the console's tokens at its JWKS, as in a city."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import httpx
import pytest
from sqlalchemy import insert, update

from services.console.app import create_app as console_app
from services.console.config import ConsoleSettings
from services.notification.app import create_app as notification_app
from services.proposals.app import create_app as proposals_app
from services.proposals.models import working_groups as proposal_working_groups
from services.registration.app import create_app as registration_app
from services.registration.models import working_groups as registration_working_groups
from tests.browser.conftest import Served, bound_socket, served
from tests.conftest import _common
from tests.support.catalog import create_working_group
from tests.support.infra import RUN_SECRETS
from tests.support.smtp import SmtpServer


@dataclass
class System:
    provider_url: str
    console: Served
    registration: Served
    proposals: Served
    notification: Served
    settings: ConsoleSettings

    def set_user(self, subject: str, name: str, roles: list[str]) -> None:
        answer = httpx.put(f"{self.provider_url}/users/{subject}", json={"name": name, "roles": roles})
        assert answer.status_code == 204, answer.text

    def revoke(self, subject: str) -> None:
        """The person is locked at the provider: their access and refresh tokens stop working."""
        answer = httpx.post(f"{self.provider_url}/users/{subject}/revoke-tokens")
        assert answer.status_code == 204, answer.text


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(access_token_max_age=timedelta(minutes=10)) as server:
        yield f"http://localhost:{server.server_port}"


def console_settings(infra, provider_url: str, port: int, **services: str) -> ConsoleSettings:
    return ConsoleSettings(
        **{**_common(infra, "console"), "database_pool_size": 5},
        public_url=f"http://localhost:{port}",
        oidc_issuer=provider_url,
        oidc_client_id="mitwirkung-console",
        oidc_client_secret="console-test-client-secret-0123456789",
        cache_seconds=0,  # tests make working groups as they go
        **services,
    )


@pytest.fixture(scope="module")
async def system(infra, registration_settings, proposals_settings, provider) -> AsyncIterator[System]:
    socks = {name: bound_socket() for name in ("console", "registration", "proposals", "notification")}
    url = {name: f"http://127.0.0.1:{s.getsockname()[1]}" for name, s in socks.items()}
    console_url = f"http://localhost:{socks['console'].getsockname()[1]}"
    # The services believe the console's key set, with the console as issuer (STAFF_JWT_JWKS_URL).
    trust = {
        "staff_jwt_jwks_url": f"{url['console']}/.well-known/jwks.json",
        "staff_jwt_issuer": console_url,
        "staff_jwt_secret": "",
    }
    smtp = SmtpServer()
    smtp.start()
    from services.notification.config import NotificationSettings

    notification = NotificationSettings(
        **{**_common(infra, "notification"), **trust},
        address_hash_secret=RUN_SECRETS["NOTIFICATION_ADDRESS_HASH_SECRET"],
        smtp_port=smtp.port,
    )
    settings = console_settings(
        infra,
        provider,
        socks["console"].getsockname()[1],
        registration_api_url=url["registration"],
        proposals_api_url=url["proposals"],
        notification_api_url=url["notification"],
    )
    try:
        async with (
            served(
                registration_app(registration_settings.model_copy(update=trust)), socks["registration"]
            ) as reg,
            served(
                proposals_app(proposals_settings.model_copy(update={**trust, "rate_limit_per_minute": 0})),
                socks["proposals"],
            ) as prop,
            served(notification_app(notification), socks["notification"]) as note,
            served(console_app(settings), socks["console"]) as console,
        ):
            yield System(provider, console, reg, prop, note, settings)
    finally:
        smtp.stop()


async def working_group(system: System, title: str | None = None, days: int = 10) -> str:
    """A working group in the registration catalog and in the proposals service's read model."""
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    wg_id = await create_working_group(system.registration.app.state.runtime, starts_at=starts)
    title = title or f"Arbeitskreis {wg_id}"
    async with system.registration.app.state.runtime.transaction() as conn:
        await conn.execute(
            update(registration_working_groups)
            .where(registration_working_groups.c.id == wg_id)
            .values(title=title)
        )
    async with system.proposals.app.state.runtime.transaction() as conn:
        await conn.execute(insert(proposal_working_groups).values(id=wg_id, title=title))
    return wg_id


COOKIE = re.compile(r"^([^=]+)=([^;]*)")


class StaffClient:
    """A member of staff's browser without the browser: follows the sign-in through the real provider,
    keeps the console's cookie itself (httpx sends no Secure cookie over http), reads CSRF tokens."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.cookies: dict[str, str] = {}
        self.http = httpx.AsyncClient(timeout=30)

    async def close(self) -> None:
        await self.http.aclose()

    def _remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            match = COOKIE.match(header)
            if match:
                name, value = match.groups()
                if value and "Max-Age=0" not in header and "expires=Thu, 01 Jan 1970" not in header:
                    self.cookies[name] = value
                else:
                    self.cookies.pop(name, None)

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        url = path if path.startswith("http") else self.system.console.base_url + path
        headers = dict(kwargs.pop("headers", {}))
        if url.startswith(self.system.console.base_url) and self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.http.request(method, url, headers=headers, **kwargs)
        self._remember(response)
        return response

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, data: dict, **kwargs) -> httpx.Response:
        return await self.request("POST", path, data=data, **kwargs)

    async def sign_in(self, subject: str) -> httpx.Response:
        """Through the provider: its authorization form, as the person with ``subject``."""
        start = await self.get("/auth/login")
        assert start.status_code == 303, start.text
        authorize = start.headers["location"]
        assert authorize.startswith(self.system.provider_url)
        answer = await self.http.post(authorize, data={"sub": subject, "action": "authorize"})
        assert answer.status_code in (302, 303), answer.text
        callback = answer.headers["location"]
        assert callback.startswith(self.system.settings.public_url + "/auth/callback")
        # The console listens on 127.0.0.1; its public name is localhost.
        return await self.get(callback.replace(self.system.settings.public_url, self.system.console.base_url))

    async def csrf(self, path: str = "/") -> str:
        page = await self.get(path)
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, page.text[:2000]
        return match.group(1)


def absolute(base: str, location: str) -> str:
    return urljoin(base, location)


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"
