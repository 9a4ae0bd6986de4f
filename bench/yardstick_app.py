"""The yardstick for the registration intake: the leanest code a skilled engineer would write for the same
job on this stack — FastAPI + pydantic (the same body model) + a raw asyncpg pool + orjson, one
transaction of two INSERTs (the registration and its event), served by uvicorn with uvloop and httptools.

No ORM or SQLAlchemy layer, no middleware, no outbox relay: what the real service does on top of this is
what the ratio measures.

    BENCH_DATABASE_URL=postgresql://… uvicorn bench.yardstick_app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager

import asyncpg
import orjson
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse

from services.registration.schemas import RegistrationRequest

DSN = os.environ["BENCH_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
POOL_SIZE = int(os.environ.get("BENCH_POOL", "20"))
pool: asyncpg.Pool | None = None

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


@asynccontextmanager
async def lifespan(app: FastAPI):
    global pool
    pool = await asyncpg.create_pool(DSN, min_size=POOL_SIZE, max_size=POOL_SIZE)
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
    yield
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
            INSERT_EVENT,
            uuid.uuid4(),
            "registration.submitted",
            orjson.dumps(body.model_dump(mode="json")).decode(),
        )
    return ORJSONResponse({"id": str(registration_id), "status": "pending_confirmation"}, status_code=202)
