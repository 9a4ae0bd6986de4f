"""The alert rules (deploy/prometheus/alerts.yml, and the same as a PrometheusRule in the Kubernetes base)
name only metrics and labels the code exports, and each alert is explained in the runbook."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.notification.dispatcher import WORKER as SENDER_WORKER
from shared.topology import QUEUES
from tests.deploy.promql import code_metrics, unknown_metric_uses

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "base" / "alerts.yaml"
RUNBOOK = ROOT / "docs" / "operating.md"

# What the issue asks the alerts to watch, each by the metric that tells it.
REQUIRED = {
    "dead letters": "mitwirkung_worker_backlog",  # worker "consumer:<queue>.dlq" (shared/watches.py)
    "outbox age": "mitwirkung_outbox_oldest_unpublished_age_seconds",
    "mail failures": "mitwirkung_mail_attempts_total",
    "sender backlog": "mitwirkung_worker_backlog",
    "erasure overdue": "mitwirkung_erasure_oldest_unfinished_age_seconds",
}


def _rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_prometheus_rule_carries_the_same_groups_as_the_rules_file() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_every_expression_names_metrics_and_labels_the_code_exports() -> None:
    metrics = code_metrics()
    problems = {rule["alert"]: unknown_metric_uses(rule["expr"], metrics) for rule in _rules()}
    assert {alert: p for alert, p in problems.items() if p} == {}


def test_the_checker_catches_a_misspelt_metric_or_label() -> None:
    metrics = code_metrics()
    assert unknown_metric_uses("max(mitwirkung_worker_backlogs) > 0", metrics)
    assert unknown_metric_uses('max(mitwirkung_worker_backlog{queue="x"}) > 0', metrics)
    assert unknown_metric_uses("sum(rate(mitwirkung_mail_attempts[5m])) > 0", metrics)
    assert not unknown_metric_uses(
        'sum(rate(mitwirkung_mail_attempts_total{status="failed"}[5m])) > 0', metrics
    )


def test_the_required_conditions_are_alerted_on_and_explained_in_the_runbook() -> None:
    rules = _rules()
    exprs = " ".join(rule["expr"] for rule in rules)
    for condition, metric in REQUIRED.items():
        assert metric in exprs, condition
    assert f'worker="{SENDER_WORKER}"' in exprs
    # The DLQ depths the broker watch reports (shared/watches.py): "<consumer's worker name>.dlq".
    (dlq_rule,) = [rule for rule in rules if rule["alert"] == "MitwirkungDeadLetters"]
    pattern = re.search(r'worker=~"([^"]+)"', dlq_rule["expr"]).group(1).encode().decode("unicode_escape")
    for queue in QUEUES:
        assert re.fullmatch(pattern, f"consumer:{queue.dead_letter_queue}"), queue.name
        assert not re.fullmatch(pattern, f"consumer:{queue.name}"), queue.name
    runbook = RUNBOOK.read_text()
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["alert"] in runbook, f"{rule['alert']} is not explained in docs/operating.md"
