"""The office's other pages: working groups, check-in at the door, measures, mail, text blocks."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
