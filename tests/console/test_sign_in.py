"""Signing in to the console through a real OpenID provider, and what protects the session: a new
session id at sign-in (no fixation), a CSRF token on every form, expiry after inactivity, sign-out here
and at the provider, no token in the browser, and roles that the services enforce themselves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from services.console.backend import Caller
from services.console.domain import Person, session_key
from services.console.models import sessions
from tests.console.conftest import StaffClient, System, unique, working_group
from tests.proposals.conftest import proposal_body
from tests.support.logs import collected

COOKIE = "__Host-mitwirkung-console"


@pytest.fixture
async def staff(system: System):
    clients: list[StaffClient] = []

    def make() -> StaffClient:
        client = StaffClient(system)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_sign_in_rotates_the_session_and_sets_a_host_cookie(system: System, staff) -> None:
    subject = unique("moderatorin")
    system.set_user(subject, "Moderatorin A", ["moderator"])
    client = staff()
    # A session id planted before sign-in (fixation) is never adopted.
    client.cookies[COOKIE] = "planted-by-someone-else"
    start = await client.get("/auth/login")
    cookie = start.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "Secure" in cookie
    assert "SameSite=lax" in cookie and "Path=/" in cookie and "Domain" not in cookie
    pending = client.cookies[COOKIE]
    assert pending != "planted-by-someone-else"
    location = start.headers["location"]
    assert "code_challenge=" in location and "code_challenge_method=S256" in location

    with collected("services.console.api") as records:
        done = await client.sign_in_from(location, subject) if hasattr(client, "sign_in_from") else None
        if done is None:
            answer = await client.http.post(location, data={"sub": subject, "action": "authorize"})
            callback = answer.headers["location"].replace(system.settings.public_url, system.console.base_url)
            done = await client.get(callback)
    assert done.status_code == 303 and done.headers["location"] == "/"
    signed_in = client.cookies[COOKIE]
    assert signed_in not in (pending, "planted-by-someone-else")
    # The id of the sign-in under way is gone; the table keeps only a hash of the new one.
    async with system.console.app.state.runtime.transaction() as conn:
        keys = set((await conn.execute(select(sessions.c.id_hash))).scalars())
    assert session_key(pending) not in keys and session_key(signed_in) in keys and signed_in not in keys
    assert any(r.getMessage().find("signed in") >= 0 or "signed in" in str(r.msg) for r in records)

    page = await client.get("/")
    assert page.status_code == 200
    assert "Moderatorin A" in page.text
    # No token reaches the browser: not in the page, not in a cookie.
    async with system.console.app.state.runtime.transaction() as conn:
        row = (
            (await conn.execute(select(sessions).where(sessions.c.id_hash == session_key(signed_in))))
            .mappings()
            .one()
        )
    assert row["refresh_token"] and row["refresh_token"] not in page.text
    assert row["access_token"] and row["access_token"] not in page.text
    assert row["roles"] == ["moderator"]


async def test_a_wrong_state_signs_nobody_in(system: System, staff) -> None:
    subject = unique("x")
    system.set_user(subject, "X", ["admin"])
    client = staff()
    start = await client.get("/auth/login")
    answer = await client.http.post(start.headers["location"], data={"sub": subject, "action": "authorize"})
    callback = answer.headers["location"].replace(system.settings.public_url, system.console.base_url)
    forged = callback.replace("state=", "state=x")
    refused = await client.get(forged)
    assert refused.status_code == 400
    assert (await client.get("/")).status_code == 303


async def test_every_page_without_a_session_redirects_to_the_sign_in(system: System, staff) -> None:
    client = staff()
    for path in (
        "/",
        "/moderation",
        f"/moderation/{uuid.uuid4()}",
        "/groups/x",
        "/groups/x/meetings/1/check-in",
        "/measures",
        "/mail",
    ):
        answer = await client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/auth/login", path


async def test_forms_without_the_csrf_token_change_nothing(system: System, staff) -> None:
    subject = unique("moderator")
    system.set_user(subject, "M", ["moderator"])
    client = staff()
    await client.sign_in(subject)
    wg = await working_group(system)
    async with httpx.AsyncClient(base_url=system.proposals.base_url) as public:
        created = await public.post("/v1/proposals", json=proposal_body(wg))
    proposal_id = created.json()["id"]
    for csrf in (None, "", "wrong", (await client.csrf("/"))[:-2] + "xx"):
        data = {"decision": "publish", "version": "1"}
        if csrf is not None:
            data["csrf"] = csrf
        answer = await client.post(f"/moderation/{proposal_id}/decision", data)
        assert answer.status_code == 403, csrf
    page = await client.get(f"/moderation/{proposal_id}")
    assert "waiting for moderation" in page.text or "wartet auf Moderation" in page.text
    # Another person's CSRF token does not open this person's session either.
    other_subject = unique("other")
    system.set_user(other_subject, "O", ["moderator"])
    other = staff()
    await other.sign_in(other_subject)
    answer = await client.post(
        f"/moderation/{proposal_id}/decision",
        {"decision": "publish", "version": "1", "csrf": await other.csrf("/")},
    )
    assert answer.status_code == 403
    # Sign-out is a form too.
    assert (await client.post("/auth/logout", {})).status_code == 403
    assert (await client.get("/")).status_code == 200


async def test_an_idle_session_expires(system: System, staff) -> None:
    subject = unique("staff")
    system.set_user(subject, "S", ["moderator"])
    client = staff()
    await client.sign_in(subject)
    assert (await client.get("/")).status_code == 200
    idle = system.settings.session_idle_minutes
    async with system.console.app.state.runtime.transaction() as conn:
        await conn.execute(
            update(sessions)
            .where(sessions.c.id_hash == session_key(client.cookies[COOKIE]))
            .values(last_seen_at=datetime.now(UTC) - timedelta(minutes=idle + 1))
        )
    answer = await client.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/auth/login"


async def test_sign_out_ends_the_session_here_and_at_the_provider(system: System, staff) -> None:
    subject = unique("staff")
    system.set_user(subject, "S", ["staff"])
    client = staff()
    await client.sign_in(subject)
    session_id = client.cookies[COOKIE]
    answer = await client.post("/auth/logout", {"csrf": await client.csrf("/")})
    assert answer.status_code == 303
    target = answer.headers["location"]
    assert target.startswith(f"{system.provider_url}/oauth2/end_session?")
    assert "id_token_hint" not in target and "post_logout_redirect_uri=" in target
    client.cookies[COOKIE] = session_id  # a copy of the old cookie does not work any more
    assert (await client.get("/")).status_code == 303


async def test_the_development_sign_in_is_refused_outside_development(system: System, staff) -> None:
    client = staff()
    assert (await client.get("/auth/development")).status_code == 404
    assert (await client.post("/auth/development", {"name": "x", "roles": "admin"})).status_code == 404


async def test_a_moderator_reads_no_participant_list_neither_in_the_console_nor_through_the_api(
    system: System, staff
) -> None:
    subject = unique("moderator")
    system.set_user(subject, "M", ["moderator"])
    client = staff()
    await client.sign_in(subject)
    wg = await working_group(system)
    overview = await client.get("/")
    assert f'href="/groups/{wg}"' not in overview.text and 'href="/mail"' not in overview.text
    page = await client.get(f"/groups/{wg}")
    assert page.status_code == 403
    # The token the console presents for this session: the service itself refuses it.
    async with system.console.app.state.runtime.transaction() as conn:
        row = (
            (
                await conn.execute(
                    select(sessions).where(sessions.c.id_hash == session_key(client.cookies[COOKIE]))
                )
            )
            .mappings()
            .one()
        )
    person = Person(subject=row["subject"], name="M", roles=frozenset(row["roles"]))
    backend = system.console.app.state.backend
    answer = await backend.call(
        Caller(person), "registration", "GET", f"/v1/working-groups/{wg}/participants"
    )
    assert answer.status_code == 403
    # … while a staff member's token from the same console is accepted.
    staff_person = Person(subject="staff.b", name="S", roles=frozenset({"staff"}))
    answer = await backend.call(
        Caller(staff_person), "registration", "GET", f"/v1/working-groups/{wg}/participants"
    )
    assert answer.status_code == 200


async def test_the_refresh_token_renews_and_a_refusal_at_the_provider_ends_the_session(
    system: System, staff
) -> None:
    subject = unique("moderator")
    system.set_user(subject, "M", ["moderator"])
    client = staff()
    with collected("services.console") as records, collected("httpx") as calls:
        await client.sign_in(subject)
        key = session_key(client.cookies[COOKIE])
        runtime = system.console.app.state.runtime

        async def row() -> dict:
            async with runtime.transaction() as conn:
                return dict(
                    (await conn.execute(select(sessions).where(sessions.c.id_hash == key))).mappings().one()
                )

        first = await row()
        async with runtime.transaction() as conn:
            past = datetime.now(UTC) - timedelta(minutes=1)
            await conn.execute(
                update(sessions).where(sessions.c.id_hash == key).values(access_expires_at=past)
            )
        assert (await client.get("/")).status_code == 200
        renewed = await row()
        assert renewed["access_token"] != first["access_token"] and renewed["access_expires_at"] > past
        # Locked at the provider: the next renewal is refused, and the console's session ends too.
        system.revoke(subject)
        async with runtime.transaction() as conn:
            await conn.execute(
                update(sessions).where(sessions.c.id_hash == key).values(access_expires_at=past)
            )
        answer = await client.get("/")
        assert answer.status_code == 303 and answer.headers["location"] == "/auth/login"
    # No token in any log line, the console's or its HTTP client's.
    logged = " ".join(str(r.msg) + str(r.args) for r in [*records, *calls])
    for token in (
        first["access_token"],
        first["refresh_token"],
        renewed["access_token"],
        renewed["refresh_token"],
    ):
        assert token and token not in logged
