"""Self-service tokens in mailed links: an HMAC of the record's id under the service's secret.

The same for every mail about the record, so the links in an earlier mail keep working when a later one
is sent; the database keeps only the token's SHA-256, so a copy of the tables hands out no working link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid


def token_for(secret: str, record_id: uuid.UUID) -> str:
    digest = hmac.new(secret.encode(), record_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
