"""Sign-in with the city's OpenID provider: authorization code flow with PKCE (Authlib's client), the
provider's metadata from discovery, the ID token checked (signature from the provider's JWKS, issuer,
audience, expiry, nonce) with PyJWT, renewal with the refresh token, and the provider's logout address."""

from __future__ import annotations

import asyncio
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from authlib.common.security import generate_token

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 package and warns that it runs on httpx, which it still supports.
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from services.console.config import ConsoleSettings

DISCOVERY_MAX_AGE_SECONDS = 3600.0


class SignInFailed(Exception):
    """The provider's answer cannot sign anybody in (the reason goes to the log, not to the page)."""


@dataclass(frozen=True)
class Tokens:
    claims: dict[str, Any]
    id_token: str | None
    access_token: str | None
    refresh_token: str | None
    expires_at: float | None


class OpenIdProvider:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.redirect_uri = f"{settings.public_url}/auth/callback"
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = asyncio.Lock()

    def _client(self, **extra: Any) -> AsyncOAuth2Client:
        s = self.settings
        return AsyncOAuth2Client(
            client_id=s.oidc_client_id,
            client_secret=s.oidc_client_secret,
            scope=s.oidc_scopes,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=s.api_timeout_seconds,
            **extra,
        )

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > DISCOVERY_MAX_AGE_SECONDS:
                url = f"{self.settings.oidc_issuer}/.well-known/openid-configuration"
                async with httpx.AsyncClient(timeout=self.settings.api_timeout_seconds) as client:
                    response = await client.get(url)
                response.raise_for_status()
                self._metadata = response.json()
                self._metadata_at = time.monotonic()
                self._jwks = jwt.PyJWKClient(self._metadata["jwks_uri"], cache_keys=True, timeout=10)
            return self._metadata

    async def authorization_request(self) -> tuple[str, dict[str, str]]:
        """The provider's address to send the browser to, and what the session keeps until it returns
        (state, nonce, PKCE verifier: never in the browser)."""
        metadata = await self.metadata()
        pending = {"state": generate_token(32), "nonce": generate_token(32), "verifier": generate_token(64)}
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=pending["state"],
                nonce=pending["nonce"],
                code_verifier=pending["verifier"],
            )
        return url, pending

    async def finish(self, code: str, pending: dict[str, str]) -> Tokens:
        metadata = await self.metadata()
        try:
            async with self._client(code_verifier=pending["verifier"]) as client:
                token = await client.fetch_token(
                    metadata["token_endpoint"], code=code, code_verifier=pending["verifier"]
                )
                claims = await self._verified_claims(token.get("id_token"), pending["nonce"])
                if self.settings.oidc_roles_claim not in claims and metadata.get("userinfo_endpoint"):
                    # Some providers put roles only into the userinfo answer.
                    info = await client.get(metadata["userinfo_endpoint"])
                    if info.status_code == 200 and info.json().get("sub") == claims["sub"]:
                        claims = {**info.json(), **claims}
        except SignInFailed:
            raise
        except Exception as exc:
            raise SignInFailed(type(exc).__name__) from None
        return self._tokens(token, claims)

    async def refresh(self, refresh_token: str) -> Tokens:
        """New tokens with the refresh token; SignInFailed when the provider refuses (signed out there)."""
        metadata = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.refresh_token(metadata["token_endpoint"], refresh_token=refresh_token)
            claims = await self._verified_claims(token.get("id_token"), None) if token.get("id_token") else {}
        except Exception as exc:
            raise SignInFailed(type(exc).__name__) from None
        return self._tokens(token, claims, refresh_token)

    async def _verified_claims(self, id_token: object, nonce: str | None) -> dict[str, Any]:
        if not isinstance(id_token, str) or self._jwks is None:
            raise SignInFailed("no ID token")
        try:
            key = await asyncio.to_thread(self._signing_key, id_token)
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=["RS256", "ES256", "PS256"],
                audience=self.settings.oidc_client_id,
                issuer=self.settings.oidc_issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise SignInFailed(type(exc).__name__) from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise SignInFailed("nonce differs")
        return claims

    def _signing_key(self, id_token: str) -> jwt.PyJWK:
        """The provider's key named by the token's ``kid``; a token without one (some providers leave it
        out) is checked against the provider's only signing key, and refused if it has several."""
        assert self._jwks is not None
        if jwt.get_unverified_header(id_token).get("kid"):
            return self._jwks.get_signing_key_from_jwt(id_token)
        keys = self._jwks.get_signing_keys()
        if len(keys) != 1:
            raise jwt.InvalidTokenError("the ID token names no key and the provider has several")
        return keys[0]

    @staticmethod
    def _tokens(token: dict[str, Any], claims: dict[str, Any], old_refresh: str | None = None) -> Tokens:
        expires_at = token.get("expires_at")
        return Tokens(
            claims=claims,
            id_token=token.get("id_token"),
            access_token=token.get("access_token"),
            refresh_token=token.get("refresh_token") or old_refresh,
            expires_at=float(expires_at) if expires_at else None,
        )

    async def logout_url(self) -> str | None:
        """The provider's end-session address (RP-initiated logout), back to the console afterwards. With
        the client id, not the ``id_token_hint``: that would put a token into a URL in the browser."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except Exception:
            return None
        if not endpoint:
            return None
        query = {"post_logout_redirect_uri": f"{self.settings.public_url}/auth/signed-out"}
        query["client_id"] = self.settings.oidc_client_id
        return f"{endpoint}?{urlencode(query)}"
