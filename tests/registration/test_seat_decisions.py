"""Confirmations of one working group that arrive together are decided together (``service.SeatDecisions``):
one lock and one commit for the batch, every caller its own answer, and no caller left waiting when another
one is cancelled, whether it waits, has just been made the leader, or leads a batch."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from services.registration import repository as repo
from services.registration import service
from tests.registration.support import (
    catalog_version,
    confirmation_of,
    insert_pending,
    pending_tokens,
    seat_state,
)
from tests.support.catalog import create_working_group


def _batches() -> tuple[float, float]:
    name = "mitwirkung_registration_confirmation_batch_size"
    return (
        REGISTRY.get_sample_value(f"{name}_count") or 0.0,
        REGISTRY.get_sample_value(f"{name}_sum") or 0.0,
    )


async def test_confirmations_arriving_together_share_batches_and_each_gets_its_own_answer(
    api, registration_settings
):
    wg = await create_working_group(api.runtime, capacity=15)
    tokens = await pending_tokens(api, registration_settings, wg, 40)
    count_before, sum_before = _batches()

    answers = await asyncio.gather(
        *(api.post("/v1/registrations/confirm", json={"token": t}) for t in tokens)
    )

    count, total = _batches()
    assert total - sum_before == 40  # every confirmation went through a batch once
    assert count - count_before < 40  # and some batches held more than one
    assert all(a.status_code == 200 for a in answers)
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("confirmed") == 15 and statuses.count("waitlisted") == 25
    positions = sorted(a.json()["waitlist_position"] for a in answers if a.json()["status"] == "waitlisted")
    assert positions == list(range(1, 26))
    state = await seat_state(api.runtime, wg)
    assert state["confirmed"] == 15 == state["counter"] and state["waitlisted"] == 25
    # A second click on each link answers what was decided, and decides nothing again.
    again = await asyncio.gather(*(api.post("/v1/registrations/confirm", json={"token": t}) for t in tokens))
    assert [a.json()["status"] for a in again] == statuses
    assert _batches()[1] == total


async def _pending(runtime, wg: str, n: int) -> list[repo.Confirmation]:
    ids = [uuid.uuid4() for _ in range(n)]
    async with runtime.transaction() as session:
        for registration_id in ids:
            await insert_pending(session, wg, registration_id)
        version = await catalog_version(session, wg)
    now = datetime.now(UTC)
    return [confirmation_of(registration_id, version, now) for registration_id in ids]


def _confirmer(runtime, decisions: service.SeatDecisions, wg: str):
    async def confirm(confirmation: repo.Confirmation):
        async with runtime.transaction() as conn:
            return await decisions.decide(conn, wg, confirmation)

    return confirm


async def _statuses(runtime, confirmations: list[repo.Confirmation]) -> list[str]:
    async with runtime.transaction() as session:
        found = dict(
            (
                await session.execute(
                    text("SELECT id, status FROM registrations WHERE id = ANY(:ids)"),
                    {"ids": [c.registration_id for c in confirmations]},
                )
            ).all()
        )
    return [found[c.registration_id] for c in confirmations]


class _Gate:
    """Holds the batches numbered in ``hold`` (from 1) until released; ``on_release`` runs just before a held
    batch returns. The decision itself is the real one, in the database."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: tuple[int, ...] = (1,)) -> None:
        self.entered = {n: asyncio.Event() for n in hold}
        self.release = {n: asyncio.Event() for n in hold}
        self.on_release = lambda: None
        self.calls = 0
        real = repo.decide_confirmations

        async def gated(conn, wg_id, confirmations):
            self.calls += 1
            number = self.calls
            if number in self.release:
                self.entered[number].set()
                await self.release[number].wait()
                decided = await real(conn, wg_id, confirmations)
                self.on_release()
                return decided
            return await real(conn, wg_id, confirmations)

        monkeypatch.setattr(repo, "decide_confirmations", gated)


async def _until(condition) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_cancelled_caller_never_leaves_the_others_waiting(api, monkeypatch):
    runtime = api.runtime
    wg = await create_working_group(runtime, capacity=10)
    a, b, c, d = await _pending(runtime, wg, 4)
    decisions = service.SeatDecisions()
    gate = _Gate(monkeypatch)

    confirm = _confirmer(runtime, decisions, wg)
    leader = asyncio.create_task(confirm(a))
    await gate.entered[1].wait()
    waiting = [asyncio.create_task(confirm(x)) for x in (b, c, d)]
    await _until(lambda: len(decisions._waiting.get(wg, [])) == 3)
    waiting[1].cancel()  # c gives up while it waits
    await asyncio.gather(waiting[1], return_exceptions=True)
    # b is made the leader of the next batch when a's is done, and is cancelled before it can start it.
    gate.on_release = lambda: asyncio.get_running_loop().call_soon(waiting[0].cancel)
    gate.release[1].set()

    assert (await leader)["outcome"] == "confirmed"
    async with asyncio.timeout(10):
        results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and isinstance(results[1], asyncio.CancelledError)
    assert results[2]["outcome"] == "confirmed"  # d led the next batch in b's place
    assert await _statuses(runtime, [a, b, c, d]) == [
        "confirmed",
        "pending_confirmation",
        "pending_confirmation",
        "confirmed",
    ]
    assert not decisions._deciding and not decisions._waiting
    assert gate.calls == 2


async def test_a_leader_cancelled_mid_batch_makes_the_others_decide_again(api, monkeypatch):
    runtime = api.runtime
    wg = await create_working_group(runtime, capacity=2)
    a, b, c, d = await _pending(runtime, wg, 4)
    decisions = service.SeatDecisions()
    gate = _Gate(monkeypatch, hold=(1, 2))

    confirm = _confirmer(runtime, decisions, wg)
    first = asyncio.create_task(confirm(a))
    await gate.entered[1].wait()
    waiting = [asyncio.create_task(confirm(x)) for x in (b, c, d)]
    await _until(lambda: len(decisions._waiting.get(wg, [])) == 3)
    gate.release[1].set()
    assert (await first)["outcome"] == "confirmed"
    await gate.entered[2].wait()  # b leads the batch of b, c and d; cancelled before its statement runs
    waiting[0].cancel()
    gate.release[2].set()

    async with asyncio.timeout(10):
        results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert (results[1]["outcome"], results[2]["outcome"]) == ("confirmed", "waitlisted")
    assert results[2]["waitlist_position"] == 1
    assert await _statuses(runtime, [a, b, c, d]) == [
        "confirmed",
        "pending_confirmation",
        "confirmed",
        "waitlisted",
    ]
    assert not decisions._deciding and not decisions._waiting


async def test_a_confirmation_is_committed_before_it_is_answered(api, registration_settings):
    """Even when the caller's unit had begun a transaction (the catalog read through SQLAlchemy when it is
    not cached), the decision commits on its own: the answer a batch hands out is already durable."""
    runtime = api.runtime
    wg = await create_working_group(runtime, capacity=5)
    [token] = await pending_tokens(api, registration_settings, wg, 1)
    decisions = service.SeatDecisions()
    async with runtime.transaction() as conn:
        await conn.execute(text("SELECT 1"))  # a transaction is open on the unit
        runtime.catalog.invalidate(wg)
        answer = await service.confirm_registration(
            conn, registration_settings, runtime.catalog, token, decisions=decisions
        )
        assert answer["status"] == "confirmed"
        # Seen from another connection while the caller's unit is still open.
        state = await seat_state(runtime, wg)
        assert state["confirmed"] == 1 == state["counter"]
