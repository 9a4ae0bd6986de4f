"""The yardstick for the registration endpoint: bare FastAPI + pydantic + a two-INSERT transaction.

Same body model, same database driver and pool size as the real service; nothing else (no outbox relay,
no middleware, no validation beyond the model)."""

from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Column, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import create_async_engine

from services.registration.schemas import RegistrationRequest

metadata = MetaData(schema="registration")
people = Table(
    "bench_people",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text),
    Column("email", Text),
    Column("working_group_id", Text),
)
events = Table(
    "bench_events",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("payload", JSONB),
)

# The same pool as the services (shared.db): 20 connections, no overflow.
engine = create_async_engine(
    os.environ["BENCH_DATABASE_URL"], pool_size=int(os.environ.get("BENCH_POOL", "20")), max_overflow=0
)


@asynccontextmanager
async def lifespan(app: FastAPI):
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/registrations", status_code=202)
async def register(body: RegistrationRequest) -> dict:
    registration_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            people.insert().values(
                id=registration_id,
                name=body.name,
                email=str(body.email),
                working_group_id=body.working_group_id,
            )
        )
        await conn.execute(events.insert().values(id=uuid.uuid4(), payload=body.model_dump(mode="json")))
    return {"id": str(registration_id), "status": "pending_confirmation"}
