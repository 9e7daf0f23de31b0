"""The PromQL of the chart's alert rules and Grafana dashboard, parsed.

Shared by tests/unit/test_chart_monitoring.py (the expressions are valid, scoped to the
release, use metrics as their types allow) and tests/e2e/test_metrics_names.py (every
metric they name is in a live scrape of the services). The expressions are parsed with
promql-parser (the Rust parser Prometheus-compatible databases use, as a Python module),
which also checks argument types (a range where a function takes one, and so on).

Grafana's variables are replaced before parsing with what Grafana would send: the
``$__rate_interval`` family by a duration, a query variable by its "All" value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser as pp

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "k8s"
DASHBOARD = CHART / "dashboards" / "exchange.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}
# Functions over a range of a counter (or of a histogram's parts, which are counters).
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
# Functions over a range of a gauge.
GAUGE_FUNCTIONS = {"deriv", "delta", "idelta", "predict_linear", "changes", "min_over_time",
                   "max_over_time", "avg_over_time", "last_over_time"}
# The sample names each kind of family exposes (prometheus_client's text format).
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("", "_sum", "_count"), "info": ("_info",)}


@dataclass(frozen=True)
class Query:
    """One expression: where it is (``alert X`` or ``panel "T" A``) and its syntax tree."""

    where: str
    text: str
    tree: Any


@dataclass(frozen=True)
class Selector:
    """A series selector in a query: the metric, its matchers (label -> (op, value)), the
    range function it is under (None: an instant vector) and whether it feeds a
    histogram_quantile."""

    name: str
    matchers: dict[str, tuple[str, str]]
    function: str | None
    in_quantile: bool


def parse(where: str, text: str) -> Query:
    try:
        return Query(where, text, pp.parse(text))
    except ValueError as err:
        raise AssertionError(f"{where}: {text!r} does not parse: {err}") from None


# -- where the queries are -----------------------------------------------------------------


def rule_queries(rules: dict[str, Any]) -> list[Query]:
    """The ``expr`` of every rule of a rendered PrometheusRule."""
    return [parse(f"alert {r.get('alert') or r.get('record')}", r["expr"])
            for group in rules["spec"]["groups"] for r in group["rules"]]


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def grafana_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """What each dashboard variable stands for in a query: its "All" value."""
    values = dict(GRAFANA_INTERVALS)
    for var in dashboard["templating"]["list"]:
        if var["type"] in ("query", "custom"):
            value = var.get("allValue") or ".*"
            values[f"${{{var['name']}}}"] = value
            values[f"${var['name']}"] = value
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):  # $__rate_interval before $__range
        text = text.replace(name, values[name])
    assert "$" not in text, f"an unknown Grafana variable in {text!r}"
    return text


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    """The expression of every panel target, and the series of every query variable
    (``label_values(<series>, <label>)``)."""
    values = grafana_values(dashboard)
    queries = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            queries.append(parse(f"panel {panel['title']!r} {target['refId']}",
                                 substitute(target["expr"], values)))
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", query)
        assert match, f"variable {var['name']}: {query!r} is not label_values(series, label)"
        queries.append(parse(f"variable {var['name']}", substitute(match.group(1), values)))
    return queries


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


# -- what a query uses ---------------------------------------------------------------------


def _children(node: Any) -> list[Any]:
    if isinstance(node, pp.AggregateExpr):
        return [node.expr] + ([node.param] if isinstance(node.param, pp.Expr) else [])
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.Call):
        return list(node.args)
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return [node.expr]
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    return []


def selectors(tree: Any) -> list[Selector]:
    """Every series selector of ``tree``, with the range function it is under."""
    found: list[Selector] = []

    def visit(node: Any, function: str | None, in_quantile: bool) -> None:
        if isinstance(node, pp.VectorSelector):
            assert node.name, f"a selector without a metric name: {node}"
            matchers = {m.name: (str(m.op).rsplit(".", 1)[-1], m.value)
                        for m in node.matchers.matchers}
            found.append(Selector(node.name, matchers, function, in_quantile))
            return
        if isinstance(node, pp.Call):
            name = node.func.name
            for arg in node.args:
                if isinstance(arg, pp.MatrixSelector):
                    visit(arg, name, in_quantile)
                else:
                    visit(arg, function, in_quantile or name == "histogram_quantile")
            return
        for child in _children(node):
            visit(child, function, in_quantile)

    visit(tree, None, False)
    return found


def metric_names(queries: list[Query]) -> dict[str, list[str]]:
    """Metric name -> the queries that use it."""
    names: dict[str, list[str]] = {}
    for query in queries:
        for selector in selectors(query.tree):
            names.setdefault(selector.name, []).append(query.where)
    return names


def family_of(name: str, families: dict[str, str]) -> tuple[str, str] | None:
    """The family (name, type) a sample name belongs to, given the families (name ->
    type) a registry or a scrape declares: ``_total`` only ends a counter's samples,
    ``_bucket`` / ``_sum`` / ``_count`` only a histogram's (or a summary's)."""
    for family, kind in families.items():
        for suffix in SUFFIXES.get(kind, ("",)):
            if name == family + suffix:
                return family, kind
    return None


def output_labels(node: Any) -> set[str] | None:
    """The labels every series of ``node``'s result has for certain (None: whatever the
    selected series have), so that an alert's annotations name only labels it has."""
    if isinstance(node, pp.VectorSelector):
        return None
    if isinstance(node, (pp.NumberLiteral, pp.StringLiteral)):
        return set()
    if isinstance(node, (pp.ParenExpr, pp.SubqueryExpr, pp.UnaryExpr)):
        return output_labels(node.expr)
    if isinstance(node, pp.MatrixSelector):
        return output_labels(node.vector_selector)
    if isinstance(node, pp.AggregateExpr):
        if node.modifier is None:
            return set()
        if node.modifier.type == pp.AggModifierType.By:
            return set(node.modifier.labels)
        return None
    if isinstance(node, pp.Call):
        name = node.func.name
        if name == "absent":
            (arg,) = node.args
            return {m.name for m in arg.matchers.matchers if m.op == pp.MatchOp.Equal}
        vectors = [a for a in node.args if not isinstance(a, (pp.NumberLiteral,
                                                             pp.StringLiteral))]
        if not vectors:
            return set()
        labels = output_labels(vectors[0])
        if name == "histogram_quantile" and labels is not None:
            labels = labels - {"le"}
        return labels
    if isinstance(node, pp.BinaryExpr):
        lhs, rhs = output_labels(node.lhs), output_labels(node.rhs)
        if isinstance(node.lhs, pp.NumberLiteral):
            return rhs
        if str(node.op) == "or":
            return None if lhs is None or rhs is None else lhs & rhs
        return lhs
    raise AssertionError(f"unexpected node {type(node).__name__}: {node}")


# -- the runbooks --------------------------------------------------------------------------


def heading_anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them (lower case;
    punctuation other than hyphens dropped; spaces to hyphens)."""
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors
