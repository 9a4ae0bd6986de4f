"""Issue 21, item 7: a cursor is a client value like any other; whatever it decodes to, the answer is a 422
naming ``cursor`` (never a 500), on the public list and on the moderation queue."""

from __future__ import annotations

import base64
import json

import pytest

from shared.http import Problem
from shared.pagination import decode_timestamp_cursor, encode_cursor
from tests.proposals.conftest import proposal_body, staff_headers


def forged(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


FORGED = [
    "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgNV0",  # the issue's: ["2026-01-01T00:00:00+00:00", 5]
    forged(["2026-01-01T00:00:00+00:00", None]),
    forged(["2026-01-01T00:00:00+00:00", ["x"]]),
    forged(["2026-01-01T00:00:00+00:00", {"a": 1}]),
    forged(["2026-01-01T00:00:00+00:00", True]),
    forged([5, "6f1c1a9e-0b0e-4f4e-9a53-3f3c2c1d0e0f"]),
    forged([None, "6f1c1a9e-0b0e-4f4e-9a53-3f3c2c1d0e0f"]),
    forged([1.5e308, "6f1c1a9e-0b0e-4f4e-9a53-3f3c2c1d0e0f"]),
    forged(["0001-01-01T00:00:00+14:00", "6f1c1a9e-0b0e-4f4e-9a53-3f3c2c1d0e0f"]),
    forged(["9999-12-31T23:59:59-14:00", "6f1c1a9e-0b0e-4f4e-9a53-3f3c2c1d0e0f"]),
    forged(["2026-01-01T00:00:00", "6f1c1a9e-0b0e-4f4e-9a53-3f3c2c1d0e0f"]),  # no time zone
    forged({"at": "2026-01-01T00:00:00+00:00"}),
    forged("just a string"),
    forged(12),
    forged([]),
    forged(["2026-01-01T00:00:00+00:00", "6f1c1a9e-0b0e-4f4e-9a53-3f3c2c1d0e0f", 3]),
    base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    base64.urlsafe_b64encode(b"[" * 5000).decode()[:190],
    "!!!!",
    "a",
]


@pytest.mark.parametrize("cursor", FORGED)
def test_a_forged_cursor_is_a_problem_naming_the_cursor(cursor):
    with pytest.raises(Problem) as refused:
        decode_timestamp_cursor(cursor)
    assert refused.value.status == 422
    assert refused.value.errors == [{"field": "cursor", "message": "invalid cursor"}]


def test_a_cursor_the_api_gave_out_still_decodes():
    import uuid
    from datetime import UTC, datetime

    at, key = datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4()
    assert decode_timestamp_cursor(encode_cursor(at, key)) == (at, key)


async def test_forged_cursors_answer_422_on_the_list_and_the_queue(proposals_api, proposals_settings):
    moderator = staff_headers(proposals_settings, "moderator")
    for cursor in FORGED[:12]:
        for path, headers in (("/v1/proposals", {}), ("/v1/moderation/queue", moderator)):
            answer = await proposals_api.get(path, params={"cursor": cursor}, headers=headers)
            assert answer.status_code == 422, (path, cursor, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["errors"] == [{"field": "cursor", "message": "invalid cursor"}]


async def test_an_if_match_that_is_a_digit_but_no_number_is_a_4xx(
    proposals_api, proposals_settings, make_working_group
):
    """``"²".isdigit()`` is true, ``int("²")`` raises: If-Match is read as ASCII digits only."""
    wg = await make_working_group(proposals_api.app)
    created = await proposals_api.post("/v1/proposals", json=proposal_body(wg))
    proposal_id = created.json()["id"]
    moderator = staff_headers(proposals_settings, "moderator")
    for value in ('"\xb2"'.encode("latin-1"), b"\xb9", '"\xb3\xb2"'.encode("latin-1")):
        answer = await proposals_api.post(
            f"/v1/moderation/proposals/{proposal_id}/decision",
            json={"decision": "publish"},
            headers={**moderator, "If-Match": value},
        )
        assert answer.status_code == 412, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")


async def test_a_control_character_in_a_text_query_is_a_422(proposals_api):
    """Postgres refuses NUL in text: a search for it was a 500. Query text is refused at the edge."""
    for q in ("a\x00b", "\x00", "line\nbreak"):
        answer = await proposals_api.get("/v1/proposals", params={"q": q})
        assert answer.status_code == 422, (q, answer.status_code)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in answer.json()["errors"]] == ["q"]
    assert (await proposals_api.get("/v1/proposals", params={"q": "Sprachcafé"})).status_code == 200
