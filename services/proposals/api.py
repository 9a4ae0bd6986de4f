"""HTTP routes of the proposals service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.proposals import service

router = APIRouter(prefix="/v1", tags=["proposals"])


class DistrictOut(BaseModel):
    id: str
    name: str


@router.get("/districts", response_model=list[DistrictOut])
async def list_districts(request: Request) -> list[dict]:
    async with request.app.state.runtime.transaction() as session:
        return await service.list_districts(session)
