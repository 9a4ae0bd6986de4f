"""What every retention and erasure job records: counts, never personal data.

A job calls :func:`record_counts` after its unit of work committed: one log line with the counts and a
Prometheus counter per service, job and kind of record (``mitwirkung_retention_records_total``).
"""

from __future__ import annotations

from prometheus_client import Counter

from shared.observability import get_logger

log = get_logger(__name__)

RETENTION_RECORDS = Counter(
    "mitwirkung_retention_records_total",
    "Records deleted or anonymised by retention jobs and erasure requests",
    ["service", "job", "kind"],
)


def record_counts(service: str, job: str, **counts: int) -> None:
    """Log and count what a job removed (kinds with zero are counted as zero, logged only if any)."""
    for kind, count in counts.items():
        RETENTION_RECORDS.labels(service, job, kind).inc(count)
    if any(counts.values()):
        log.info("personal data removed", service=service, job=job, **counts)
