"""The one rule for waiting between attempts: exponential growth up to a cap, optionally with equal
jitter. Loops that retry an operation use tenacity with it (``wait_exponential_capped``); schedules kept
in the database (outbox rows, deliveries) compute their next attempt with ``exponential_delay``."""

from __future__ import annotations

import random
from typing import Any

from tenacity import RetryCallState


def exponential_delay(attempt: int, base: float, cap: float) -> float:
    """``base`` before the second attempt, doubling with each further one, never above ``cap``."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)))


def equal_jitter(delay: float) -> float:
    """Between half the delay and the delay: spread out, never much shorter than planned."""
    return random.uniform(delay / 2, delay)


class wait_exponential_capped:  # noqa: N801 (named like tenacity's wait strategies)
    """A tenacity ``wait=`` strategy using :func:`exponential_delay`."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        return exponential_delay(retry_state.attempt_number, self.base, self.cap)


def log_before_retry(log: Any, message: str, **fields: Any) -> Any:
    """A tenacity ``before_sleep=`` callback that logs the failure and the wait."""

    def before_sleep(retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else None
        log.warning(message, attempt=retry_state.attempt_number, error=repr(error), retry_in=wait, **fields)

    return before_sleep
