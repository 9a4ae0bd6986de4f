"""The author's contact data: removed on request and after the retention period; the proposal stays,
anonymous, and its private link stops working."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text

from services.proposals import service
from shared.db import asyncpg_dsn
from tests.conftest import unique_email
from tests.proposals.conftest import proposal_body, staff_headers


async def _columns_mentioning(database_url: str, needle: str) -> list[str]:
    """Every text or JSON column of every table in the proposals schema that contains ``needle``."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'proposals' "
            "AND data_type IN ('text', 'jsonb', 'json', 'character varying')"
        )
        found = []
        for c in columns:
            hit = await conn.fetchval(
                f'SELECT count(*) FROM proposals."{c["table_name"]}" WHERE lower("{c["column_name"]}"::text) LIKE $1',
                f"%{needle.lower()}%",
            )
            if hit:
                found.append(f"{c['table_name']}.{c['column_name']}")
        return found
    finally:
        await conn.close()


async def test_erasure_removes_the_address_in_any_case_and_keeps_the_text(
    proposals_api, make_working_group, proposals_settings
):
    app = proposals_api.app
    wg = await make_working_group(app)
    email = unique_email("Erase.Me")
    ids = []
    for address in (email, email.upper()):
        answer = await proposals_api.post(
            "/v1/proposals", json=proposal_body(wg, author_name="Zu Löschen", author_email=address)
        )
        ids.append(answer.json()["id"])
    moderator = staff_headers(proposals_settings, "moderator")
    await proposals_api.post(
        f"/v1/moderation/proposals/{ids[0]}/decision",
        json={"decision": "publish"},
        headers={**moderator, "If-Match": "1"},
    )

    async with app.state.runtime.transaction() as session:
        assert await service.forget_author(session, email.lower()) == 2
    # Unpublished events aside (the relay sends and housekeeping deletes them), nothing holds the address.
    leftovers = [
        c for c in await _columns_mentioning(proposals_settings.database_url, email) if c != "outbox.payload"
    ]
    assert leftovers == []
    assert "Zu Löschen" not in str(await _columns_mentioning(proposals_settings.database_url, "Zu Löschen"))
    view = (await proposals_api.get(f"/v1/moderation/proposals/{ids[0]}", headers=moderator)).json()
    assert (view["author_name"], view["author_has_email"]) == (None, False)
    assert (await proposals_api.get(f"/v1/proposals/{ids[0]}")).json()[
        "title"
    ] == "Sprachcafé im Stadtteiltreff"


async def test_contact_data_goes_after_the_retention_period_of_a_finished_proposal(
    proposals_api, make_working_group, proposals_settings
):
    app = proposals_api.app
    wg = await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    finished, waiting = [], []
    for bucket in (finished, waiting):
        answer = await proposals_api.post(
            "/v1/proposals", json=proposal_body(wg, author_email=unique_email("old"))
        )
        bucket.append(answer.json()["id"])
    await proposals_api.post(
        f"/v1/moderation/proposals/{finished[0]}/decision",
        json={"decision": "reject", "public_statement": "Nicht zuständig"},
        headers={**moderator, "If-Match": "1"},
    )
    async with app.state.runtime.transaction() as session:
        await session.execute(
            text("UPDATE proposals SET updated_at = now() - interval '181 days' WHERE id = ANY(:ids)"),
            {"ids": [finished[0], waiting[0]]},
        )
        assert await service.forget_authors_after_retention(session, proposals_settings) >= 1
        rows = dict(
            (str(r.id), r.author_email)
            for r in await session.execute(
                text("SELECT id, author_email FROM proposals WHERE id = ANY(:ids)"),
                {"ids": [finished[0], waiting[0]]},
            )
        )
    assert rows[finished[0]] is None
    assert rows[waiting[0]] is not None  # still waiting for a decision: the author is still owed mail


async def test_contact_data_goes_when_a_proposal_never_ends(
    proposals_api, make_working_group, proposals_settings
):
    """Never moderated, abandoned in ``changes_requested``, published without an outcome: the author's
    contact data goes ``unfinished_author_retention_days`` after the last change; the proposal stays."""
    app = proposals_api.app
    wg = await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    ids: dict[str, str] = {}
    for name in ("never_moderated", "abandoned", "no_outcome", "recent"):
        answer = await proposals_api.post(
            "/v1/proposals", json=proposal_body(wg, author_name="Lange Her", author_email=unique_email(name))
        )
        ids[name] = answer.json()["id"]
    for name, decision in (("abandoned", "request_changes"), ("no_outcome", "publish")):
        answer = await proposals_api.post(
            f"/v1/moderation/proposals/{ids[name]}/decision",
            json={"decision": decision, "public_statement": "Bitte genauer beschreiben"},
            headers={**moderator, "If-Match": "1"},
        )
        assert answer.status_code == 200, answer.text
    days = proposals_settings.unfinished_author_retention_days
    async with app.state.runtime.transaction() as session:
        for name, age in (("never_moderated", days + 1), ("abandoned", days + 1), ("no_outcome", days + 1)):
            await session.execute(
                text("UPDATE proposals SET updated_at = now() - make_interval(days => :age) WHERE id = :id"),
                {"age": int(age), "id": ids[name]},
            )
        await session.execute(
            text("UPDATE proposals SET updated_at = now() - make_interval(days => :age) WHERE id = :id"),
            {"age": int(days - 1), "id": ids["recent"]},
        )
        assert await service.forget_authors_after_retention(session, proposals_settings) >= 3
        rows = {
            str(r.id): r
            for r in await session.execute(
                text(
                    "SELECT id, status, title, author_name, author_email, token_hash FROM proposals WHERE id = ANY(:ids)"
                ),
                {"ids": list(ids.values())},
            )
        }
    for name in ("never_moderated", "abandoned", "no_outcome"):
        row = rows[ids[name]]
        assert (row.author_name, row.author_email, row.token_hash) == (None, None, None), name
        assert row.title == "Sprachcafé im Stadtteiltreff"
    assert [rows[ids[n]].status for n in ("never_moderated", "abandoned", "no_outcome")] == [
        "submitted",
        "changes_requested",
        "published",
    ]
    assert rows[ids["recent"]].author_email is not None
