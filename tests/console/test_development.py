"""The console as `scripts/run` starts it: development, no OpenID provider. Its sign-in asks for a name and
roles and signs HS256 tokens with STAFF_JWT_SECRET, which the services accept as they accept
`mitwirkung token` — and it is refused in every other environment (tests/console/test_sign_in.py)."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy import insert

from services.console.app import create_app as console_app
from services.console.config import ConsoleSettings
from services.proposals.app import create_app as proposals_app
from services.proposals.models import working_groups
from tests.browser.conftest import served
from tests.conftest import JWT_SECRET, _common, running
from tests.proposals.conftest import proposal_body


async def test_the_development_sign_in_moderates_with_the_local_secret(infra, proposals_settings) -> None:
    async with served(
        proposals_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    ) as site:
        settings = ConsoleSettings(
            **{**_common(infra, "console"), "database_pool_size": 3, "environment": "development"},
            proposals_api_url=site.base_url,
            cache_seconds=0,
        )
        assert settings.staff_jwt_secret == JWT_SECRET and not settings.secure_cookies
        wg = f"dev-{uuid.uuid4().hex[:8]}"
        async with site.app.state.runtime.transaction() as conn:
            await conn.execute(insert(working_groups).values(id=wg, title="Arbeitskreis Entwicklung"))
        async with httpx.AsyncClient(base_url=site.base_url) as public:
            proposal = (await public.post("/v1/proposals", json=proposal_body(wg))).json()["id"]
        async with running(console_app(settings)) as console:
            assert (await console.get("/auth/login")).headers["location"] == "/auth/development"
            form = await console.get("/auth/development")
            cookie = form.headers["set-cookie"]
            assert (
                cookie.startswith("mitwirkung-console=") and "Secure" not in cookie and "HttpOnly" in cookie
            )
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            # No CSRF token, no sign-in.
            assert (
                await console.post("/auth/development", data={"name": "Ada", "roles": "moderator"})
            ).status_code == 403
            form = await console.get("/auth/development")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            done = await console.post(
                "/auth/development", data={"csrf": csrf, "name": "Ada", "roles": ["moderator", "root"]}
            )
            assert done.status_code == 303
            page = await console.get(f"/moderation/{proposal}")
            assert page.status_code == 200 and "Sprachcafé" in page.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            decided = await console.post(
                f"/moderation/{proposal}/decision", data={"csrf": csrf, "version": "1", "decision": "publish"}
            )
            assert decided.status_code == 303
        async with httpx.AsyncClient(base_url=site.base_url) as public:
            assert (await public.get(f"/v1/proposals/{proposal}")).status_code == 200
