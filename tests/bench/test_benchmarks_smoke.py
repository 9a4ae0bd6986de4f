"""Every benchmark still runs: each is started as the README says, with tiny numbers, and must print its
JSON with the figures it promises. No timing is asserted here (figures come from full runs by hand)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE_RUNS = {
    "registration_throughput": (
        [
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--pending",
            "200",
            "--confirm-seconds",
            "1",
            "--connections",
            "8",
        ],
        [
            "baseline",
            "publishing_yardstick",
            "registration",
            "ratio",
            "cpu_ratio_to_publishing_yardstick",
            "confirmations",
        ],
    ),
    "notification_throughput": (
        ["--n", "40", "--connections", "2", "--rounds", "2", "--senders", "2"],
        [
            "bare_mails_per_s",
            "pipeline_mails_per_s",
            "ratio",
            "ratios_per_round",
            "layout",
            "pipeline_timeline_s",
        ],
    ),
    "notification_rate_limit": (["--per-minute", "600", "--mails", "12"], ["arrived", "max_in_any_60s"]),
    "proposals_bench": (
        ["--proposals", "3000", "--requests", "5", "--seconds", "1", "--rounds", "1", "--connections", "8"],
        ["reads", "search", "intake"],
    ),
    "system_burst": (["--smoke"], ["burst_result", "steady"]),
    "console_bench": (["--proposals", "3000", "--requests", "3"], ["pages", "p99_max_ms"]),
    "attendance_bench": (
        ["--people", "12", "--seconds", "1", "--clients", "2"],
        ["p50_ms", "p99_ms", "yardstick_get_working_group", "counts"],
    ),
    "relay_floor": (
        ["--events", "50", "--rounds", "1"],
        ["relay_cpu_us_per_event", "floor_cpu_us_per_event", "relay_over_floor"],
    ),
    # 300 registrations paced over ~7.5 s: the queue leader is killed after 90 were accepted, the
    # Postgres primary stopped after 180 (then the standby promoted), both while POSTs come in.
    "failover_drill": (
        # --timeout: a lost mail fails the drill's own count well within the test's timeout, and the drill
        # still cleans up after itself (a drill killed by the test could not stop its nodes and servers).
        "--registrations 300 --rate 40 --kill-rabbit-at 0.3 --stop-postgres-at 0.6 --timeout 90".split(),
        ["accepted", "missing", "twice", "dlq_messages", "events", "first_write_after_primary_stop_s"],
    ),
}


@pytest.mark.parametrize("name", sorted(SMOKE_RUNS))
def test_benchmark_runs_and_prints_its_figures(name: str) -> None:
    assert shutil.which("wrk"), "wrk is missing: scripts/bootstrap-venv installs it"
    if name == "failover_drill":
        assert shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists(), (
            "haproxy is missing: scripts/bootstrap-venv installs it"
        )
    args, keys = SMOKE_RUNS[name]
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in keys:
        assert key in figures, f"{name} printed no {key!r}: {figures}"
    if name == "system_burst":
        assert figures["burst_result"]["missing"] == 0 and figures["burst_result"]["duplicates"] == 0
        assert figures["steady"]["mailed"] == figures["steady"]["posted"]
        assert {"registration", "notification", "notification-sender", "postgres", "rabbitmq", "sink"} <= set(
            figures["burst_result"]["cpu_s"]
        )
    if name == "failover_drill":
        # Every accepted registration mailed exactly once across both failovers, nothing dead-lettered,
        # and both failures really happened in the middle of the burst.
        assert figures["accepted"] == 300 and figures["gave_up"] == 0, figures
        assert figures["accepted_lost_in_failover"] == 0, figures
        assert figures["missing"] == 0 and figures["twice"] == 0, figures
        assert figures["recipients_mailed_more_than_once"] == 0, figures
        assert figures["dlq_messages"] == 0 and set(figures["dlq"]), figures
        events = figures["events"]
        assert events["rabbit_leader_killed"]["accepted_before"] < 300, figures
        assert events["postgres_primary_stopped"]["accepted_before"] < 300, figures
        assert figures["first_write_after_primary_stop_s"] is not None, figures
    if name == "attendance_bench":
        # Every check-in answered 200 (the repeated ones too), and each person counted once.
        assert figures["non_200"] == 0 and figures["counts"]["present"] == 12 + figures["counts"]["walk_ins"]
    if name == "notification_throughput":
        # Every mail of both pipeline rounds sent once, by two sender replicas, and counted at the sink.
        assert figures["pipeline_statuses"] == {"sent": 80} and figures["pipeline_mails_received"] == 80
    if name == "registration_throughput":
        assert figures["registration"]["non_2xx"] == 0 and not figures["confirmations"]["overbooked"]
        confirmations = figures["confirmations"]
        assert confirmations["non_2xx"] == 0 and confirmations["yardstick"]["non_2xx"] == 0
        assert figures["publishing_yardstick"]["non_2xx"] == 0
