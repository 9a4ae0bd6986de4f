"""Staff authentication: a bearer JWT checked for signature, expiry, issuer and audience; roles from `roles`.

HS256 with a shared secret serves local use; RS256 with a PEM public key or a JWKS URL serves a city's
identity provider. Only ``admin`` implies the other roles (API.md): ``moderator`` decides on proposals
and never reads participant lists, planning figures or delivery logs, which ``staff`` may.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Request

from shared.http import Problem
from shared.settings import ServiceSettings

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
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Problem(
                401,
                "Unauthorized",
                f"The bearer token is not valid: {exc}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from exc
        return StaffUser(subject=str(claims["sub"]), roles=effective_roles(claims.get("roles")))


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
