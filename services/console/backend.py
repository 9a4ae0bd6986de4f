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

    async def public(self, service: str, path: str, **kwargs: Any) -> httpx.Response:
        """A public read (the catalog): no token at all."""
        try:
            response = await self.clients[service].get(path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(service, type(exc).__name__) from None
        if response.status_code >= 500:
            raise ServiceUnreachable(service, str(response.status_code))
        return response
