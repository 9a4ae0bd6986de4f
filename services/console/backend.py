"""The three services' public APIs, called on the signed-in person's behalf (httpx, one pooled client per
service). Every call carries a staff token for that person: one the console signs for a few minutes
(cached until shortly before it expires), or the provider's own access token (CONSOLE_TOKEN_MODE=provider).
The token goes into the Authorization header only: never into a URL, a page or a log."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from services.console.config import ConsoleSettings
from services.console.domain import Person
from services.console.signing import Signer
from shared.observability import correlation_id_var, get_logger

log = get_logger(__name__)
SERVICES = ("registration", "notification", "proposals")


class ServiceUnreachable(Exception):
    """A service did not answer, or answered with a server error."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service


@dataclass
class Caller:
    """Who a call is made for: the person, and the provider's access token where it is passed on."""

    person: Person
    development: bool = False
    provider_token: str | None = None


class Backend:
    def __init__(self, settings: ConsoleSettings, signer: Signer) -> None:
        self.settings = settings
        self.signer = signer
        urls = {
            "registration": settings.registration_api_url,
            "notification": settings.notification_api_url,
            "proposals": settings.proposals_api_url,
        }
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        self.clients = {
            name: httpx.AsyncClient(
                base_url=url.rstrip("/"), timeout=settings.api_timeout_seconds, limits=limits
            )
            for name, url in urls.items()
        }
        self._tokens: dict[tuple[str, frozenset[str]], tuple[str, float]] = {}
        self._shared: dict[tuple[str, str], tuple[Any, float]] = {}

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    def _token(self, caller: Caller) -> str:
        if self.settings.token_mode == "provider" and caller.provider_token:
            return caller.provider_token
        key = (caller.person.subject, caller.person.roles)
        cached = self._tokens.get(key)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0]
        token = self.signer.token_for(caller.person, development=caller.development)
        # Reused for at most half its life, so a service never sees one about to expire.
        self._tokens[key] = (token, now + self.settings.signed_token_seconds / 2)
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        return token

    async def call(
        self, caller: Caller, service: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers["Authorization"] = f"Bearer {self._token(caller)}"
        headers["X-Correlation-ID"] = correlation_id_var.get() or ""
        headers.setdefault("Accept", "application/json")
        try:
            response = await self.clients[service].request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("service call failed", service=service, error=type(exc).__name__)
            raise ServiceUnreachable(service, type(exc).__name__) from None
        if response.status_code >= 500:
            log.warning("service answered with an error", service=service, status=response.status_code)
            raise ServiceUnreachable(service, str(response.status_code))
        return response

    async def shared_json(self, service: str, path: str, ttl: float, fetch: Any) -> Any:
        """An answer that is the same for everybody allowed to see it and holds no personal data (the
        catalog, the districts, the moderation counts), kept ``ttl`` seconds per process: a page view
        then costs the services one call less each. ``fetch`` makes the call (the caller has checked the
        person's role before asking)."""
        key = (service, path)
        found = self._shared.get(key)
        now = time.monotonic()
        if ttl <= 0:
            return await fetch()
        if found and found[1] > now:
            return found[0]
        value = await fetch()
        if value is not None:
            self._shared[key] = (value, now + ttl)
        return value

    async def catalog(self, service: str, path: str) -> Any:
        """A public list (working groups, districts), kept for half a minute."""

        async def fetch() -> Any:
            answer = await self.public(service, path)
            return answer.json() if answer.status_code == 200 else None

        return await self.shared_json(service, path, self.settings.cache_seconds, fetch) or []

    async def public(self, service: str, path: str, **kwargs: Any) -> httpx.Response:
        """A public read (the catalog): no token at all."""
        try:
            response = await self.clients[service].get(path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(service, type(exc).__name__) from None
        if response.status_code >= 500:
            raise ServiceUnreachable(service, str(response.status_code))
        return response
