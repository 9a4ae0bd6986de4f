"""The console's own staff tokens: signed per call to a service with the console's RSA key (RS256),
for providers whose access tokens the services cannot verify (opaque ones). The public half is
published as a JWKS at ``/.well-known/jwks.json``; the services verify it there (``STAFF_JWT_JWKS_URL``)
with the console as issuer and ``mitwirkung`` as audience, as they verify any staff token.

A development sign-in without a key signs HS256 with ``STAFF_JWT_SECRET``, like ``mitwirkung token``."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.console.config import ConsoleSettings
from services.console.domain import Person


@dataclass
class Signer:
    settings: ConsoleSettings
    private_key: rsa.RSAPrivateKey | None
    kid: str = ""

    @classmethod
    def of(cls, settings: ConsoleSettings) -> Signer:
        pem = settings.signing_key_pem()
        if pem:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("CONSOLE_SIGNING_KEY must be an RSA private key")
        elif settings.token_mode == "console" and settings.oidc_issuer:
            # Outside production only (ConsoleSettings.production_problems): one replica's own key.
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = None
        signer = cls(settings, key)
        if key is not None:
            der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            signer.kid = hashlib.sha256(der).hexdigest()[:16]
        return signer

    def jwks(self) -> dict:
        if self.private_key is None:
            return {"keys": []}
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
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
        if development and self.private_key is None:
            claims["iss"] = s.staff_jwt_issuer
            return jwt.encode(claims, s.staff_jwt_secret, algorithm="HS256")
        if self.private_key is None:
            raise RuntimeError("the console has no signing key")
        claims["iss"] = s.signed_token_issuer
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})
