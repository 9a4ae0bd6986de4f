"""Collecting the log lines of one logger in a test (``configure_logging`` replaces the root's handlers,
so pytest's caplog sees nothing once an app is made)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def collected(name: str, level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """The records the logger ``name`` emits at ``level`` or above while the block runs."""
    logger = logging.getLogger(name)
    collector, before = _Collector(), logger.level
    logger.addHandler(collector)
    logger.setLevel(level)
    try:
        yield collector.records
    finally:
        logger.removeHandler(collector)
        logger.setLevel(before)
