"""The yardstick for the registration intake: the leanest code a skilled engineer would write for the same
job on this stack — FastAPI + pydantic (the same body model) + a raw asyncpg pool (without the reset
query on release) + orjson, one
transaction of two INSERTs (the registration and its event), served by uvicorn with uvloop and httptools.

No ORM or SQLAlchemy layer, no middleware, no outbox relay: what the real service does on top of this is
what the ratio measures.

    BENCH_DATABASE_URL=postgresql://… uvicorn bench.yardstick_app:app --loop uvloop --http httptools

With ``BENCH_AMQP_URL`` set it also does the rest of the job, the leanest way: the event row is an outbox
row, and a task in the same process publishes what was committed (claim up to 500 rows with
``FOR UPDATE SKIP LOCKED``, publish them persistent with publisher confirms on aiormq, mark them), woken
after each commit. That is the ceiling for an intake that must not lose its events: no FastAPI middleware,
no SQLAlchemy, no idempotency, rate limit, token or catalog.

``POST /v1/registrations/confirm`` is the yardstick for a confirmation: in one transaction, the
registration found by its token's hash with its working group's row locked, the seat decided by the
service's own rule (``domain.confirm``), the registration, the counters and the event written in one statement, the answer
in JSON (the event built with orjson, title and meetings cached per ``catalog_version``). Its events go
to ``registration.outbox``, so run it with ``BENCH_OUTBOX=registration.outbox`` (the relay then publishes
from that table, and only when woken by its own commits, so that it never takes another process's rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from contextlib import asynccontextmanager

import aiormq
import aiormq.connection
import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse
from pamqp.commands import Basic

from services.registration import domain
from services.registration.schemas import RegistrationRequest
from shared.runtime import AMQP_WRITE_QUEUE_FRAMES
from shared.tokens import hash_token

DSN = os.environ["BENCH_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
POOL_SIZE = int(os.environ.get("BENCH_POOL", "20"))
AMQP_URL = os.environ.get("BENCH_AMQP_URL")
EXCHANGE = os.environ.get("BENCH_EXCHANGE", "mitwirkung.events")
# The table the relay publishes from: the yardstick's own outbox, or the service's (for confirmations).
OUTBOX = os.environ.get("BENCH_OUTBOX", "registration.yardstick_outbox")
pool: asyncpg.Pool | None = None
wake = asyncio.Event()

SCHEMA = """
CREATE TABLE IF NOT EXISTS registration.yardstick_people (
    id uuid PRIMARY KEY, working_group_id text NOT NULL, name text NOT NULL, email text NOT NULL,
    language text NOT NULL, participant_type text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS registration.yardstick_events (
    id uuid PRIMARY KEY, event_type text NOT NULL, payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
"""
INSERT_PERSON = (
    "INSERT INTO registration.yardstick_people (id, working_group_id, name, email, language, participant_type) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
INSERT_EVENT = (
    "INSERT INTO registration.yardstick_events (id, event_type, payload) VALUES ($1, $2, $3::jsonb)"
)
# The publishing variant: the events table is an outbox (its own table, so that the plain variant's
# inserts do not maintain the index).
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS registration.yardstick_outbox (
    seq bigserial, id uuid PRIMARY KEY, event_type text NOT NULL, payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz);
CREATE INDEX IF NOT EXISTS yardstick_outbox_unpublished ON registration.yardstick_outbox (seq)
    WHERE published_at IS NULL;
"""
INSERT_OUTBOX = (
    "INSERT INTO registration.yardstick_outbox (id, event_type, payload) VALUES ($1, $2, $3::jsonb)"
)
CLAIM = (
    f"SELECT id, event_type, payload::text AS payload FROM {OUTBOX} "
    "WHERE published_at IS NULL ORDER BY seq LIMIT 500 FOR UPDATE SKIP LOCKED"
)
MARK = f"UPDATE {OUTBOX} SET published_at = now() WHERE id = ANY($1::uuid[])"
# Its own outbox's relay also polls (every 2 s); one on the service's outbox only wakes for its own commits.
POLL = 2.0 if OUTBOX == "registration.yardstick_outbox" else None
FOR_CONFIRMATION = (
    "SELECT r.id, r.status, r.participant_type, r.name, r.email, r.language, w.id AS working_group_id,"
    " w.capacity, w.expert_reserved, w.confirmed_general, w.confirmed_reserved, w.waitlist_seq,"
    " w.waitlisted, w.catalog_version FROM registration.registrations r"
    " JOIN registration.working_groups w ON w.id = r.working_group_id WHERE r.token_hash = $1"
    " FOR UPDATE OF w"
)
WORKING_GROUP = (
    "SELECT w.title, coalesce(json_agg(json_build_object('number', m.number, 'starts_at', m.starts_at,"
    " 'ends_at', m.ends_at, 'venue', m.venue, 'address', m.address, 'sequence', m.sequence,"
    " 'cancelled', m.cancelled) ORDER BY m.number)"
    " FILTER (WHERE m.number IS NOT NULL), '[]')::text AS meetings"
    " FROM registration.working_groups w LEFT JOIN registration.meetings m ON m.working_group_id = w.id"
    " WHERE w.id = $1 GROUP BY w.title"
)
STORE_CONFIRMATION = """
WITH decided AS (
    UPDATE registration.registrations SET status = $2, seat = $3, waitlist_seq = $4,
        confirmed_at = clock_timestamp(), expires_at = NULL, updated_at = now()
    WHERE id = $1 AND status = 'pending_confirmation' RETURNING id
), counters AS (
    UPDATE registration.working_groups SET confirmed_general = $6, confirmed_reserved = $7,
        waitlist_seq = $8, waitlisted = $9, updated_at = now()
    WHERE id = $5 AND EXISTS (SELECT 1 FROM decided) RETURNING id
), event AS (
    INSERT INTO registration.outbox (id, event_type, event_version, payload)
    SELECT $10, $11, 1, $12::jsonb FROM decided RETURNING id
)
SELECT EXISTS (SELECT 1 FROM decided) AS decided
"""
working_groups: dict[tuple[str, int], dict] = {}
GROUP_FIELDS = [f.name for f in dataclasses.fields(domain.GroupCounters)][1:]  # after the id


async def relay() -> None:
    """Publish committed events: the leanest relay that loses none (confirms before marking)."""
    # As in the services: room for a whole pass in the connection's write queue.
    aiormq.connection.Connection.FRAME_BUFFER_SIZE = AMQP_WRITE_QUEUE_FRAMES
    connection = await aiormq.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    assert pool is not None
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await wake.wait()
            wake.clear()
            await asyncio.sleep(0.005)  # let a burst of commits gather into one pass
            while True:
                async with pool.acquire() as conn, conn.transaction():
                    rows = await conn.fetch(CLAIM)
                    confirms = await asyncio.gather(
                        *(
                            channel.basic_publish(
                                row["payload"].encode(),
                                exchange=EXCHANGE,
                                routing_key=row["event_type"],
                                properties=Basic.Properties(
                                    delivery_mode=2,
                                    message_id=str(row["id"]),
                                    message_type=row["event_type"],
                                    content_type="application/json",
                                ),
                                wait=False,
                            )
                            for row in rows
                        )
                    )
                    published = [
                        row["id"] for row, c in zip(rows, confirms, strict=True) if isinstance(c, Basic.Ack)
                    ]
                    await conn.execute(MARK, published)
                if len(rows) < 500:
                    break
    finally:
        await connection.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's own (listeners dropped, an open transaction rolled back)."""


@asynccontextmanager
async def lifespan(app: FastAPI):
    global pool
    # No reset query when a connection goes back (asyncpg's default costs a round trip per request): the
    # app changes no session state, and a transaction left open is rolled back by asyncpg anyway.
    pool = await asyncpg.create_pool(DSN, min_size=POOL_SIZE, max_size=POOL_SIZE, reset=_keep_session)
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
        if AMQP_URL:
            await conn.execute(OUTBOX_SCHEMA)
    publisher = asyncio.create_task(relay()) if AMQP_URL else None
    yield
    if publisher is not None:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
    await pool.close()


app = FastAPI(lifespan=lifespan, default_response_class=ORJSONResponse)


@app.post("/v1/registrations", status_code=202)
async def register(body: RegistrationRequest) -> ORJSONResponse:
    registration_id = uuid.uuid4()
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT_PERSON,
            registration_id,
            body.working_group_id,
            body.name,
            str(body.email),
            body.language,
            body.participant_type,
        )
        await conn.execute(
            INSERT_OUTBOX if AMQP_URL else INSERT_EVENT,
            uuid.uuid4(),
            "registration.submitted",
            orjson.dumps(body.model_dump(mode="json")).decode(),
        )
    if AMQP_URL:
        wake.set()
    return ORJSONResponse({"id": str(registration_id), "status": "pending_confirmation"}, status_code=202)


@app.post("/v1/registrations/confirm")
async def confirm(request: Request) -> ORJSONResponse:
    """A double opt-in's second step, the leanest way (no page, rate limit, correlation id or retry)."""
    token = orjson.loads(await request.body())["token"]
    token_hash = hash_token(token)
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(FOR_CONFIRMATION, token_hash)
        if row is None:
            return ORJSONResponse({"detail": "not found"}, status_code=404)
        if row["status"] != "pending_confirmation":  # a second click: the current status, as the service
            return ORJSONResponse({"id": str(row["id"]), "status": row["status"]})
        key = (row["working_group_id"], row["catalog_version"])
        group = working_groups.get(key)
        if group is None:
            found = await conn.fetchrow(WORKING_GROUP, row["working_group_id"])
            group = {"id": key[0], "title": found["title"], "meetings": orjson.loads(found["meetings"])}
            working_groups[key] = group
        payload = orjson.dumps(
            {
                "registration_id": str(row["id"]),
                "recipient": {"email": row["email"], "name": row["name"], "language": row["language"]},
                "working_group": {"id": group["id"], "title": group["title"]},
                "meetings": group["meetings"],
                "participant_type": row["participant_type"],
                "links": {
                    name: f"https://mitwirkung.example/v1/registrations/{name}?token={token}"
                    for name in ("me", "cancel", "calendar")
                },
            }
        ).decode()
        decided = domain.confirm(
            domain.GroupCounters(row["working_group_id"], *(row[f] for f in GROUP_FIELDS)),
            row["participant_type"],
        )
        after = decided.group
        if decided.waitlist_position is not None:
            payload = payload[:-1] + f',"waitlist_position":{decided.waitlist_position}}}'
        stored = await conn.fetchval(
            STORE_CONFIRMATION,
            row["id"],
            decided.status,
            decided.seat,
            decided.waitlist_seq,
            after.id,
            after.confirmed_general,
            after.confirmed_reserved,
            after.waitlist_seq,
            after.waitlisted,
            uuid.uuid4(),
            decided.event_type,
            payload,
        )
        if not stored:
            return ORJSONResponse({"id": str(row["id"]), "status": "decided meanwhile"})
    if AMQP_URL:
        wake.set()
    body = {"id": str(row["id"]), "status": decided.status}
    if decided.waitlist_position is not None:
        body["waitlist_position"] = decided.waitlist_position
    return ORJSONResponse(body)
