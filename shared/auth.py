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
from typing import Annotated

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


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.staff_jwt_jwks_url) if settings.staff_jwt_jwks_url else None

    async def verify(self, token: str) -> StaffUser:
        s = self.settings
        try:
            if self._jwks is not None:
                # PyJWKClient fetches (and caches) the key set over blocking HTTP: off the event loop.
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key, algorithms = signing_key.key, ["RS256"]
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
