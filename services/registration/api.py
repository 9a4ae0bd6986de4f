"""HTTP routes of the registration service: parse, call the use case, map the answer."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from services.registration import repository as repo
from services.registration import service
from services.registration.models import idempotency_keys
from services.registration.schemas import RegistrationAccepted, RegistrationRequest, WorkingGroupOut
from shared.http import Problem
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1", tags=["registration"])


def _runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not (1 <= len(key) <= 200) or not key.isprintable():
        raise Problem(
            422,
            "Invalid request",
            "The Idempotency-Key header is invalid.",
            errors=[{"field": "Idempotency-Key", "message": "1 to 200 printable characters"}],
        )
    return key


@router.get("/working-groups", response_model=list[WorkingGroupOut])
async def list_working_groups(request: Request) -> list[dict]:
    async with _runtime(request).transaction() as session:
        return await service.working_group_views(session)


@router.get("/working-groups/{working_group_id}", response_model=WorkingGroupOut)
async def get_working_group(working_group_id: str, request: Request) -> dict:
    async with _runtime(request).transaction() as session:
        views = await service.working_group_views(session, [working_group_id])
    if not views:
        raise Problem(404, "Not found", "There is no working group with this id.")
    return views[0]


@router.post(
    "/registrations",
    status_code=202,
    response_model=RegistrationAccepted,
    responses={422: {"description": "Invalid field (problem+json)"}, 413: {"description": "Body too large"}},
)
async def register(
    body: RegistrationRequest,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    runtime = _runtime(request)
    key = _check_idempotency_key(idempotency_key)
    request_hash = hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    try:
        async with runtime.transaction() as session:
            if key is not None:
                stored = await repo.idempotent_response(session, key)
                if stored is not None:
                    return _replay(stored, request_hash)
            if body.website:
                # Honeypot filled: a bot. Answer like a success, store and send nothing.
                registration_id = service.uuid.uuid4()
            else:
                registration_id = await service.submit_registration(session, runtime.settings, body)
            answer = {"id": str(registration_id), "status": "pending_confirmation"}
            if key is not None:
                await session.execute(
                    insert(idempotency_keys).values(
                        key=key, request_hash=request_hash, status_code=202, response=answer
                    )
                )
    except IntegrityError:
        # The same key raced in twice: the other request committed first; answer as it did.
        async with runtime.transaction() as session:
            stored = await repo.idempotent_response(session, key) if key else None
        if stored is None:
            raise
        return _replay(stored, request_hash)
    return JSONResponse(answer, status_code=202)


def _replay(stored, request_hash: str) -> JSONResponse:
    if stored.request_hash != request_hash:
        raise Problem(
            422,
            "Idempotency key reused",
            "This Idempotency-Key was used with a different body.",
            errors=[{"field": "Idempotency-Key", "message": "already used with a different body"}],
        )
    return JSONResponse(stored.response, status_code=stored.status_code)
