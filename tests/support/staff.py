"""Staff tokens for the tests: the Authorization header of a member of staff with some roles."""

from __future__ import annotations

from shared.auth import mint_token


def auth(settings, *roles: str, subject: str = "tester@stadt") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, subject, list(roles))}"}
