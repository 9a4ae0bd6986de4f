"""The migrations that add the mailbox keys (registration 0011, proposals 0003) fill them for the rows
that are already there, so the per-mailbox budgets count yesterday's mails too. On a database of its own."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shared.migrations import ServiceDatabase, bootstrap, migrate
from tests.support import infra as test_infra


def test_existing_rows_get_their_mailbox_key(infra):
    run = uuid.uuid4().hex[:8]
    scratch = test_infra.TestInfra(
        admin_url=infra.admin_url, database=f"mw_mig_{run}", role_prefix=f"mw_mig_{run}", amqp_url=""
    )
    services = {s: ServiceDatabase(s, scratch.database_url(s)) for s in ("registration", "proposals")}
    try:
        asyncio.run(bootstrap(infra.admin_url, list(services.values())))
        migrate("registration", services["registration"].owner_url, "0010")
        migrate("proposals", services["proposals"].owner_url, "0002")
        dsn = services["registration"].owner_url.replace("postgresql+asyncpg://", "postgresql://")
        pdsn = services["proposals"].owner_url.replace("postgresql+asyncpg://", "postgresql://")

        async def before() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(
                    "INSERT INTO registration.working_groups (id, title, capacity) VALUES ('wg', 'AK', 10)"
                )
                for n, email in enumerate(("Victim+a@Example.org", "j.doe+x@googlemail.com", None)):
                    await conn.execute(
                        "INSERT INTO registration.registrations (id, working_group_id, status, email, "
                        "email_key, language, participant_type, token_hash) "
                        "VALUES ($1, 'wg', 'expired', $2, lower($2), 'de', 'resident', $3)",
                        uuid.uuid4(),
                        email,
                        f"hash-{n}",
                    )
            finally:
                await conn.close()
            conn = await asyncpg.connect(pdsn)
            try:
                await conn.execute("INSERT INTO proposals.working_groups (id, title) VALUES ('wg', 'AK')")
                await conn.execute(
                    "INSERT INTO proposals.proposals (id, working_group_id, title, body, language, "
                    "author_email, status) VALUES ($1, 'wg', 't', 'b', 'de', 'Author+1@Example.org', 'submitted')",
                    uuid.uuid4(),
                )
            finally:
                await conn.close()

        asyncio.run(before())
        migrate("registration", services["registration"].owner_url, "head")
        migrate("proposals", services["proposals"].owner_url, "head")

        async def after() -> tuple[list, list]:
            conn = await asyncpg.connect(dsn)
            try:
                keys = await conn.fetch(
                    "SELECT email, mailbox_key FROM registration.registrations ORDER BY email"
                )
            finally:
                await conn.close()
            conn = await asyncpg.connect(pdsn)
            try:
                authors = await conn.fetch("SELECT author_mailbox FROM proposals.proposals")
            finally:
                await conn.close()
            return keys, authors

        keys, authors = asyncio.run(after())
        assert [(r["email"], r["mailbox_key"]) for r in keys] == [
            ("Victim+a@Example.org", "victim@example.org"),
            ("j.doe+x@googlemail.com", "jdoe@gmail.com"),
            (None, None),
        ]
        assert [r["author_mailbox"] for r in authors] == ["author@example.org"]
    finally:
        asyncio.run(test_infra._drop(scratch))
