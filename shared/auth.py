"""Staff authentication: a bearer JWT checked for signature, expiry, issuer and audience; roles from `roles`.

HS256 with a shared secret serves local use; RS256 with a PEM public key or a JWKS URL serves a city's
identity provider. Only ``admin`` implies the other roles (API.md): ``moderator`` decides on proposals
and never reads participant lists, planning figures or delivery logs, which ``staff`` may.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from shared.http import Problem
from shared.observability import get_logger
from shared.settings import ServiceSettings

log = get_logger(__name__)

ROLE_IMPLIES = {
    "admin": {"admin", "moderator", "staff"},
    "moderator": {"moderator"},
    "staff": {"staff"},
}


@dataclass(frozen=True)
class StaffUser:
    subject: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles


def effective_roles(claimed: object) -> frozenset[str]:
    if not isinstance(claimed, list):
        return frozenset()
    roles: set[str] = set()
    for role in claimed:
        if isinstance(role, str):
            roles |= ROLE_IMPLIES.get(role, set())
    return frozenset(roles)


# The key set is fetched at most once per this many seconds, whatever the requests ask for (an unknown
# ``kid`` is what anyone can send): a rotated key is known this long after the provider publishes it.
JWKS_REFETCH_SECONDS = 60.0
# A key set older than this is fetched again when a token needs it (the provider may have revoked a key).
JWKS_MAX_AGE_SECONDS = 300.0


class JwksKeys:
    """The identity provider's key set (``STAFF_JWT_JWKS_URL``), cached. Fetched when a token names a key
    the cache lacks or the cache is older than ``max_age`` — but never more than once per
    ``refetch_seconds``, successful or not, and by one request at a time (the others wait for its result).
    An unknown ``kid`` right after a fetch is refused without fetching; a failed fetch keeps the keys known
    before it."""

    def __init__(self, url: str, refetch_seconds: float, max_age: float = JWKS_MAX_AGE_SECONDS) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=10)
        self.refetch_seconds = refetch_seconds
        self.max_age = max(max_age, refetch_seconds)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # the last attempt, successful or not (monotonic)
        self._loaded_at: float | None = None  # the last successful one
        self._lock = asyncio.Lock()

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.refetch_seconds

    def _wanted(self, kid: str) -> bool:
        stale = self._loaded_at is None or time.monotonic() - self._loaded_at >= self.max_age
        return kid not in self._keys or stale

    async def key(self, token: str) -> Any:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("the token names no key")
        # A fetch under way (the lock is held) is waited for, not repeated.
        if self._wanted(kid) and (self._may_fetch() or self._lock.locked()):
            async with self._lock:
                # Whoever held the lock may have fetched meanwhile: decide again.
                if self._wanted(kid) and self._may_fetch():
                    await self._fetch()
        found = self._keys.get(kid)
        if found is None:
            raise jwt.InvalidTokenError("unknown key id")
        return found.key

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            # Blocking HTTP: off the event loop.
            key_set = await asyncio.to_thread(self._client.get_jwk_set, True)
        except jwt.PyJWTError as exc:
            log.warning("staff key set not fetched", error=type(exc).__name__)
            return
        self._keys = {k.key_id: k for k in key_set.keys if k.key_id}
        self._loaded_at = time.monotonic()


class TokenVerifier:
    def __init__(self, settings: ServiceSettings, jwks_refetch_seconds: float = JWKS_REFETCH_SECONDS) -> None:
        self.settings = settings
        url = settings.staff_jwt_jwks_url
        self._jwks = JwksKeys(url, jwks_refetch_seconds) if url else None

    async def verify(self, token: str) -> StaffUser:
        s = self.settings
        try:
            if self._jwks is not None:
                key, algorithms = await self._jwks.key(token), ["RS256"]
            elif s.staff_jwt_public_key:
                key, algorithms = s.staff_jwt_public_key, ["RS256"]
            elif s.staff_jwt_secret:
                key, algorithms = s.staff_jwt_secret, ["HS256"]
            else:
                raise Problem(503, "Staff login not configured", "No STAFF_JWT_* key is configured.")
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=s.staff_jwt_audience,
                issuer=s.staff_jwt_issuer or None,
                options={"require": ["exp", "iat", "sub", "aud"]},
            )
            self._check_lifetime(claims)
        except jwt.PyJWTError as exc:
            # The reason goes to the log, not to the caller: library messages help whoever probes tokens.
            log.info("staff token refused", reason=type(exc).__name__)
            raise Problem(
                401,
                "Unauthorized",
                "The bearer token is not valid.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        return StaffUser(subject=str(claims["sub"]), roles=effective_roles(claims.get("roles")))

    def _check_lifetime(self, claims: dict) -> None:
        """Refuse tokens that live longer than STAFF_JWT_MAX_LIFETIME_HOURS (a leaked one expires soon)."""
        limit = self.settings.staff_jwt_max_lifetime_hours * 3600
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise jwt.InvalidTokenError("exp and iat must be numbers")
        # A little slack for clocks that disagree by a minute.
        if exp - iat > limit + 60 or exp - time.time() > limit + 60:
            raise jwt.InvalidTokenError("token lifetime exceeds the limit")


def mint_token(
    settings: ServiceSettings, subject: str, roles: list[str], ttl: timedelta = timedelta(hours=8)
) -> str:
    """A locally signed (HS256) staff token, for development and tests."""
    if not settings.staff_jwt_secret:
        raise ValueError("STAFF_JWT_SECRET is not set")
    now = datetime.now(UTC)
    claims = {
        "sub": subject,
        "roles": roles,
        "iss": settings.staff_jwt_issuer,
        "aud": settings.staff_jwt_audience,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, settings.staff_jwt_secret, algorithm="HS256")


async def authorize(request: Request, role: str, *alternatives: str) -> StaffUser:
    """The staff user behind the request's bearer token, or 401/403 as problem+json.

    The user needs ``role`` (or one of ``alternatives``, for a route that shows nothing personal and
    serves more than one kind of staff)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401,
            "Unauthorized",
            "A staff bearer token is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    user = await verifier.verify(token.strip())
    if not any(user.has(r) for r in (role, *alternatives)):
        raise Problem(403, "Forbidden", f"This needs the role '{role}'.")
    return user


def require_role(role: str, *alternatives: str):
    """A FastAPI dependency that yields the staff user, or answers 401/403 as problem+json."""

    async def dependency(request: Request) -> StaffUser:
        return await authorize(request, role, *alternatives)

    return Annotated[StaffUser, Depends(dependency)]
