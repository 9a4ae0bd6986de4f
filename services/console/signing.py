"""The console's own staff tokens: signed per call to a service with the console's RSA key (RS256),
for providers whose access tokens the services cannot verify (opaque ones). The public half is
published as a JWKS at ``/.well-known/jwks.json``; the services verify it there (``STAFF_JWT_JWKS_URL``)
with the console as issuer and ``mitwirkung`` as audience, as they verify any staff token.

A development sign-in without a key signs HS256 with ``STAFF_JWT_SECRET``, like ``mitwirkung token``."""

from __future__ import annotations

import hashlib
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.console.config import ConsoleSettings
from services.console.domain import Person


class Signer:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._loaded = False
        self._key: rsa.RSAPrivateKey | None = None
        self.kid = ""

    @classmethod
    def of(cls, settings: ConsoleSettings) -> Signer:
        return cls(settings)

    @property
    def private_key(self) -> rsa.RSAPrivateKey | None:
        """The key, read on first use (a mounted Secret: the file is there when the pod serves)."""
        if not self._loaded:
            self._key = self._load()
            self._loaded = True
            if self._key is not None:
                der = self._key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                self.kid = hashlib.sha256(der).hexdigest()[:16]
        return self._key

    def _load(self) -> rsa.RSAPrivateKey | None:
        settings = self.settings
        pem = settings.signing_key_pem()
        if pem:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("CONSOLE_SIGNING_KEY must be an RSA private key")
            return key
        if settings.token_mode == "console" and settings.oidc_issuer:
            # Outside production only (ConsoleSettings.production_problems): one replica's own key.
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return None

    def jwks(self) -> dict:
        key = self.private_key
        if key is None:
            return {"keys": []}
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def token_for(self, person: Person, *, development: bool) -> str:
        """A token for one call: the person's subject and roles, valid for a few minutes."""
        now = int(time.time())
        s = self.settings
        claims = {
            "sub": person.subject,
            "roles": sorted(person.roles),
            "aud": s.staff_jwt_audience,
            "iat": now,
            "exp": now + s.signed_token_seconds,
        }
        key = self.private_key
        if development and key is None:
            claims["iss"] = s.staff_jwt_issuer
            return jwt.encode(claims, s.staff_jwt_secret, algorithm="HS256")
        if key is None:
            raise RuntimeError("the console has no signing key")
        claims["iss"] = s.signed_token_issuer
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})
