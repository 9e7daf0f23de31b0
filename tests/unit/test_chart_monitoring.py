"""The chart's alerts (a PrometheusRule) and Grafana dashboard (a ConfigMap).

Rendered with both on (the "monitoring" value set of test_helm_chart.py, which its
generic tests lint and check too), then checked as objects, and every PromQL expression
of the rules and of the dashboard parsed (tests/promql_checks.py): scoped to the
release, naming metrics and labels the services declare, rate() only over counters,
histogram_quantile() only over buckets, annotations naming only labels the alert has,
and a section of docs/runbooks.md for every alert. tests/e2e/test_metrics_names.py finds
every metric name in a live scrape of the services.
"""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
from promql_checks import (
    COUNTER_FUNCTIONS,
    GAUGE_FUNCTIONS,
    RUNBOOKS,
    Query,
    dashboard_panels,
    dashboard_queries,
    family_of,
    heading_anchors,
    load_dashboard,
    metric_names,
    output_labels,
    rule_queries,
    selectors,
)
from test_helm_chart import NAMESPACE, PREFIX, RELEASE, VALUE_SETS, Rendered, _template

from exchange_common.metrics import Children, Registry
from marketdata_service.metrics import MarketDataMetrics
from matching_service.metrics import MatchingMetrics
from order_service.metrics import OrderMetrics

MONITORING = VALUE_SETS["monitoring"]
RUNBOOK_BASE = MONITORING["metrics"]["prometheusRule"]["runbookBaseUrl"]
JOB = f"{PREFIX}-metrics"
# Labels the scrape adds to every series (the ServiceMonitor's targets and podTargetLabels).
SCRAPE_LABELS = {"namespace", "job", "pod", "service", "endpoint", "container", "instance",
                 "app_kubernetes_io_component"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

# The thresholds the alerts were asked for: alert -> (severity, comparison, for).
THRESHOLDS = {
    "ExchangeOrderLatencyP95High": ("warning", 0.2, "5m"),
    "ExchangeOrderLatencyP99Critical": ("critical", 0.5, "5m"),
    "ExchangeOverloadShedding": ("warning", 0, "5m"),
    "ExchangeMatchingQueueDepthHigh": ("warning", 100, "2m"),
    "ExchangeMatchingQueueDepthCritical": ("critical", 1000, "1m"),
    "ExchangeInstrumentWithoutOwner": ("critical", 0, "1m"),
    "ExchangeDatabasePoolSaturated": ("warning", 0.8, "5m"),
    "ExchangeServerErrorRateHigh": ("warning", 0.001, "5m"),
    "ExchangeServerErrorRateCritical": ("critical", 0.01, "5m"),
    "ExchangeMarketDataSubscribersNearLimit": ("warning", 0.8, "5m"),
}

# What the dashboard shows, by the metrics its panels read.
DASHBOARD_METRICS = {
    "throughput": {"exchange_orders_accepted_total", "exchange_orders_rejected_total"},
    "latency percentiles": {"exchange_order_latency_seconds_bucket"},
    "matching queue depth": {"exchange_matching_queue_depth"},
    "journal commits": {"exchange_journal_commit_seconds_bucket",
                        "exchange_matching_batch_commands_bucket",
                        "exchange_journal_commit_failures_total"},
    "errors by code": {"exchange_grpc_server_handled_total"},
    "subscribers": {"exchange_marketdata_subscribers", "exchange_marketdata_subscriber_limit"},
    "ownership": {"exchange_matching_owner_epoch", "exchange_instruments_without_owner"},
    "database pools": {"exchange_db_pool_connections", "exchange_db_pool_max_connections"},
    "publication": {"exchange_marketdata_publish_lag_seconds_bucket",
                    "exchange_marketdata_publish_backlog"},
    "overload": {"exchange_overload_refused_total"},
}


@pytest.fixture(scope="module")
def monitoring(helm, tmp_path_factory) -> Rendered:
    return _template(helm, tmp_path_factory.mktemp("monitoring"), MONITORING)


@pytest.fixture(scope="module")
def rule(monitoring) -> dict[str, Any]:
    (obj,) = monitoring.all("PrometheusRule")
    return obj


@pytest.fixture(scope="module")
def alerts(rule) -> dict[str, dict[str, Any]]:
    found = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    by_name = {r["alert"]: r for r in found}
    assert len(by_name) == len(found), "two alerts have one name"
    return by_name


@pytest.fixture(scope="module")
def rule_exprs(rule) -> list[Query]:
    return rule_queries(rule)


@pytest.fixture(scope="module")
def dashboard_exprs() -> list[Query]:
    return dashboard_queries(load_dashboard())


def declared_metrics() -> dict[str, tuple[str, set[str]]]:
    """Every metric family the three services declare: name -> (type, label names).
    prometheus_client has no public accessor for a labelled metric's label names before
    its first child, hence its attributes."""
    families: dict[str, tuple[str, set[str]]] = {}
    for cls in (OrderMetrics, MatchingMetrics, MarketDataMetrics):
        metrics = cls(Registry())
        for value in vars(metrics).values():
            metric = value.metric if isinstance(value, Children) else value
            if hasattr(metric, "_labelnames") and hasattr(metric, "_type"):
                families[metric._name] = (metric._type, set(metric._labelnames))
    return families


# --- the objects --------------------------------------------------------------------------


def test_off_by_default(helm, tmp_path):
    r = _template(helm, tmp_path, {})
    assert not r.all("PrometheusRule")
    assert not [c for c in r.all("ConfigMap") if c["metadata"]["name"] == f"{PREFIX}-dashboard"]
    # metrics.enabled false: nothing to alert on or to show.
    off = _template(helm, tmp_path, {"metrics": {"enabled": False, "prometheusRule": {
        "enabled": True}, "dashboard": {"enabled": True}}})
    assert not off.all("PrometheusRule")
    assert not [c for c in off.all("ConfigMap")
                if c["metadata"]["name"] == f"{PREFIX}-dashboard"]


def test_prometheus_rule_object(rule, alerts):
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == PREFIX
    assert rule["metadata"]["labels"]["release"] == "prom"  # the Prometheus selector
    groups = [g["name"] for g in rule["spec"]["groups"]]
    assert len(set(groups)) == len(groups)
    for name, r in alerts.items():
        assert re.fullmatch(r"Exchange[A-Z][A-Za-z0-9]+", name), name
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["labels"]["team"] == "trading", name  # additionalRuleLabels
        if "for" in r:
            assert DURATION.match(r["for"]), name
        notes = r["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert notes["summary"].strip() and notes["description"].strip(), name
        assert notes["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}", name


def test_every_alert_has_a_runbook_section(alerts):
    anchors = heading_anchors(RUNBOOKS.read_text())
    missing = [a for a in alerts if a.lower() not in anchors]
    assert not missing, f"no section in docs/runbooks.md for {missing}"
    stale = [a for a in anchors if a.startswith("exchange") and a not in
             {name.lower() for name in alerts}]
    assert not stale, f"docs/runbooks.md has sections for alerts that do not exist: {stale}"


def test_runbook_links_resolve():
    text = RUNBOOKS.read_text()
    anchors = heading_anchors(text)
    broken = [a for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in anchors]
    assert not broken, f"links to no heading in docs/runbooks.md: {broken}"


@pytest.mark.parametrize("alert", sorted(THRESHOLDS))
def test_alert_thresholds(alerts, alert):
    severity, threshold, wait = THRESHOLDS[alert]
    r = alerts[alert]
    assert r["labels"]["severity"] == severity
    assert r["for"] == wait
    tree = promql_parser.parse(r["expr"])
    assert isinstance(tree, promql_parser.BinaryExpr) and str(tree.op) == ">", r["expr"]
    assert isinstance(tree.rhs, promql_parser.NumberLiteral)
    assert tree.rhs.val == threshold


def test_error_rate_counts_only_server_side_codes(alerts):
    for name in ("ExchangeServerErrorRateHigh", "ExchangeServerErrorRateCritical"):
        tree = promql_parser.parse(alerts[name]["expr"])
        codes = [s.matchers["code"] for s in selectors(tree) if "code" in s.matchers]
        assert codes == [("Re", "UNKNOWN|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS|"
                                "UNIMPLEMENTED")], name


def test_annotations_name_only_labels_the_alert_has(alerts):
    for name, r in alerts.items():
        labels = output_labels(promql_parser.parse(r["expr"]))
        used = set()
        for text in (r["annotations"]["summary"], r["annotations"]["description"]):
            used |= set(re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text))
        if labels is not None:
            assert used <= labels, f"{name}: {used - labels} not in its result's labels"


# --- the expressions ----------------------------------------------------------------------


def test_rule_selectors_are_scoped_to_the_release(rule_exprs):
    """Two releases (or namespaces) in one Prometheus never answer for each other."""
    for query in rule_exprs:
        for s in selectors(query.tree):
            assert s.matchers.get("namespace") == ("Equal", NAMESPACE), (query.where, s)
            assert s.matchers.get("job") == ("Equal", JOB), (query.where, s)


def test_dashboard_selectors_follow_the_namespace_variable(dashboard_exprs):
    for query in dashboard_exprs:
        if query.where.startswith("variable"):
            continue
        for s in selectors(query.tree):
            assert s.matchers.get("namespace") == ("Re", ".*"), (query.where, s)


def test_metrics_are_declared_and_used_as_their_types_allow(rule_exprs, dashboard_exprs):
    declared = declared_metrics()
    types = {name: kind for name, (kind, _) in declared.items()}
    problems = []
    for query in rule_exprs + dashboard_exprs:
        found = selectors(query.tree)
        labels = set(SCRAPE_LABELS)
        for s in found:
            family = family_of(s.name, types)
            if family is None:
                problems.append(f"{query.where}: {s.name} is no declared metric")
                continue
            name, kind = family
            labels |= declared[name][1] | ({"le"} if kind == "histogram" else set())
            if s.function in COUNTER_FUNCTIONS and kind not in ("counter", "histogram"):
                problems.append(f"{query.where}: {s.function}() over {s.name}, a {kind}")
            if s.function in GAUGE_FUNCTIONS and kind != "gauge":
                problems.append(f"{query.where}: {s.function}() over {s.name}, a {kind}")
            if s.in_quantile and not (s.name.endswith("_bucket") and kind == "histogram"
                                      and s.function in ("rate", "increase")):
                problems.append(f"{query.where}: histogram_quantile over {s.name}")
            for label in set(s.matchers) - {"__name__"}:
                if label not in SCRAPE_LABELS | declared[name][1]:
                    problems.append(f"{query.where}: {s.name} has no label {label}")
        for group_by in _grouping_labels(query.tree):
            if group_by not in labels:
                problems.append(f"{query.where}: grouped by {group_by}, which no series has")
    assert not problems, "\n".join(problems)


def _grouping_labels(tree: Any) -> set[str]:
    found: set[str] = set()

    def pre(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.update(node.modifier.labels)

    promql_parser.walk(tree, pre)
    return found


def test_dashboard_shows_what_was_asked(dashboard_exprs):
    used = set(metric_names(dashboard_exprs))
    missing = {what: names - used for what, names in DASHBOARD_METRICS.items()
               if names - used}
    assert not missing


def test_a_bad_expression_is_caught():
    """The parser refuses what Prometheus refuses (the checks above can fail)."""
    from promql_checks import parse

    for text in ("sum(rate(x[5m])) by (le", "rate(x)", "histogram_quantile(0.9)",
                 "rate(x[5m])[5m]", "unknown_function(x)"):
        with pytest.raises(AssertionError, match="does not parse"):
            parse("test", text)


# --- the dashboard ------------------------------------------------------------------------


def test_dashboard_config_map(monitoring):
    (cm,) = [c for c in monitoring.all("ConfigMap")
             if c["metadata"]["name"] == f"{PREFIX}-dashboard"]
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Exchange"}
    (key,) = cm["data"]
    assert key.endswith(".json")
    assert json.loads(cm["data"][key]) == load_dashboard()  # the file, not rendered
    assert len(cm["data"][key].encode()) < 1024 * 1024  # a ConfigMap's limit


def test_dashboard_is_a_valid_grafana_dashboard():
    d = load_dashboard()
    assert d["schemaVersion"] >= 39  # Grafana 11 and later
    assert d["title"] and 0 < len(d["uid"]) <= 40
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ds = {"type": "prometheus", "uid": "${datasource}"}
    panels = dashboard_panels(d)
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[x, y] = p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == ds, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == ds, p["title"]
            assert t["expr"].strip(), p["title"]


def test_dashboard_namespace_and_labels_are_configurable(helm, tmp_path):
    r = _template(helm, tmp_path, {"metrics": {"dashboard": {
        "enabled": True, "namespace": "monitoring", "labels": {"grafana_dashboard": "exchange"}}}})
    (cm,) = [c for c in r.all("ConfigMap") if c["metadata"]["name"] == f"{PREFIX}-dashboard"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "exchange"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
