"""CPU time, measured from outside, per part of the system (for the benchmarks)."""

from __future__ import annotations

import psutil


class CpuTime:
    """CPU seconds (user + system) each part of the system spent between ``start`` and ``stop``: the service
    processes, the sink, and every Postgres and RabbitMQ process of the machine (their server processes
    are shared with nobody during the run). Where the time goes, measured from outside."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._before: dict[int, tuple[str, float]] = {}
        self.seconds: dict[str, float] = {}

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        groups = {pid: name for name, pid in self.pids.items()}
        found: dict[int, tuple[str, float]] = {}
        for process in psutil.process_iter(["name", "cpu_times"]):
            name = process.info["name"] or ""
            group = groups.get(process.pid) or (
                "postgres" if name.startswith("postgres") else "rabbitmq" if name == "beam.smp" else None
            )
            times = process.info["cpu_times"]
            if group is not None and times is not None:
                found[process.pid] = (group, times.user + times.system)
        return found

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> None:
        totals: dict[str, float] = {}
        for pid, (group, seconds) in self._snapshot().items():
            earlier = self._before.get(pid)
            totals[group] = totals.get(group, 0.0) + seconds - (earlier[1] if earlier else 0.0)
        self.seconds = {group: round(value, 1) for group, value in sorted(totals.items())}
