"""The metric names (and their label names) the code registers, and the metric names a PromQL expression
uses: so that an alert rule or a scaling query naming a metric the code does not export fails a test."""

from __future__ import annotations

import importlib
import re

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

# Every module that defines metrics is imported by one of these.
METRIC_MODULES = (
    "shared.observability",
    "shared.retention",
    "services.registration.app",
    "services.notification.app",
    "services.proposals.app",
)
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

# PromQL's own words: aggregations, functions, keywords (what may stand where a metric name could).
PROMQL_WORDS = frozenset(
    """sum min max avg count stddev stdvar topk bottomk quantile count_values group by without on ignoring
    group_left group_right bool and or unless offset rate irate increase delta idelta deriv clamp_min
    clamp_max clamp abs absent absent_over_time ceil floor round time vector scalar histogram_quantile
    sum_over_time avg_over_time max_over_time min_over_time count_over_time last_over_time changes resets
    label_replace label_join sort sort_desc timestamp predict_linear inf nan""".split()
)


def code_metrics() -> dict[str, frozenset[str]]:
    """Every sample name the code's collectors can produce -> the label names it carries."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    metrics: dict[str, frozenset[str]] = {}
    collectors = set(REGISTRY._collector_to_names)  # the registry's own record of what is registered
    for collector in collectors:
        if not isinstance(collector, MetricWrapperBase) or not collector._name.startswith("mitwirkung_"):
            continue
        labels = frozenset(collector._labelnames)
        for suffix in _SUFFIXES.get(collector._type, ("",)):
            name = collector._name + suffix
            metrics[name] = labels | ({"le"} if suffix == "_bucket" else set())
    return metrics


_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_uses(expr: str) -> list[tuple[str, frozenset[str]]]:
    """(metric name, label names matched on it) for each series selector of ``expr``."""
    uses: list[tuple[str, frozenset[str]]] = []
    text = _RANGE.sub(" ", expr)
    for match in _SELECTOR.finditer(text):
        matchers = _STRING.sub('""', match.group(2))
        labels = frozenset(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        uses.append((match.group(1) or "", labels))
    bare = _SELECTOR.sub(" ", _GROUPING.sub(" ", _STRING.sub(" ", text)))
    bare = re.sub(r"\b[0-9][0-9.e+-]*[smhdwy]?\b", " ", bare)
    for name in _IDENT.findall(bare):
        if name not in PROMQL_WORDS:
            uses.append((name, frozenset()))
    return uses


def unknown_metric_uses(expr: str, metrics: dict[str, frozenset[str]]) -> list[str]:
    """What ``expr`` names that the code does not export (metrics, or labels a metric has not)."""
    problems = []
    uses = metric_uses(expr)
    if not uses:
        problems.append(f"no metric in {expr!r}")
    for name, labels in uses:
        if name not in metrics:
            problems.append(f"metric {name!r} is not exported by the code")
        elif not labels <= metrics[name]:
            problems.append(f"{name} has no label(s) {sorted(labels - metrics[name])}")
    return problems
