"""The Helm chart in deploy/k8s, linted and rendered for several value sets.

The rendered objects are parsed and checked: immutable selectors, gRPC probes,
the EXCHANGE_* environment each service's settings class needs, the matching
StatefulSet's instrument assignment (by running its entrypoint), the hardened
pods, the hook Job, the schema's strictness.

helm is the ``helm`` fixture (tests/conftest.py; tests/helm_tool.py says where it
comes from). Only when no helm binary can be had are these tests skipped, with the
reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from exchange_common import db, instrument_file
from exchange_common.config import (
    CommonSettings,
    MarketDataSettings,
    MatchingSettings,
    OrderSettings,
)

yaml = pytest.importorskip(
    "yaml", reason="PyYAML is needed to parse the rendered chart: pyyaml is in the test extra"
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "k8s"

RELEASE = "rel"
NAMESPACE = "trading"
PREFIX = f"{RELEASE}-exchange"

# Value sets rendered by every generic test. JSON is YAML, so they go to helm as files.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "groups": {
        "matching": {
            "instrumentGroups": [["BTC-USD"], ["ETH-USD", "SOL-USD"], ["XRP-USD"]],
            "standbys": 2,
        },
        # SOL-USD made by the migrate Job; XRP-USD made with the admin API.
        "instruments": [
            {"symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tickSize": "0.001",
             "lotSize": "0.01", "minQuantity": "0.01", "maxQuantity": "100000",
             "minNotional": "1", "priceBandBps": 1000, "makerFeeBps": -1, "takerFeeBps": 5},
            {"symbol": "XRP-USD"},
        ],
    },
    "existing-secret": {
        "postgresql": {"existingSecret": "pg-creds", "existingSecretKey": "uri"},
        "redis": {"existingSecret": "redis-creds"},
        "internalAuth": {"existingSecret": "token-creds", "existingSecretKey": "token"},
        "pageTokens": {"existingSecret": "paging-creds"},
    },
    "tls": {
        "tls": {"enabled": True, "existingSecret": "exchange-tls",
                "clientCaSecret": "exchange-client-ca"},
        "internalTls": {"enabled": True, "existingSecret": "exchange-internal-tls",
                        "allowedClients": ["order-service", "order-canary"]},
    },
    "internal-tls": {
        "internalTls": {"enabled": True, "existingSecret": "exchange-internal-tls",
                        "serverName": ""},
        "networkPolicy": {"enabled": False},
    },
    "admin": {
        "order": {"admin": {"enabled": True, "port": 50053},
                  "config": {"rateLimits": False, "maxFailedAuthPerMinute": 100,
                             "maxStreamsPerConnection": 4, "matchingTimeout": 5,
                             "cacheTtl": 30}},
        "migrations": {"bootstrapAdminKeySecret": "exchange-admin"},
    },
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "prometheusRule": {
                "enabled": True, "labels": {"release": "prom"},
                "additionalRuleLabels": {"team": "trading"},
                "runbookBaseUrl": "https://docs.example/exchange/runbooks.md"},
            "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Exchange"}},
        },
        "networkPolicy": {
            "enabled": True,
            "clientsFrom": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "gateway"}}}],
            "egress": {"restrict": True, "extraRules": [
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]}]},
        },
        "otel": {
            "enabled": True,
            "endpoint": "http://otel-collector.observability:4317",
            "resourceAttributes": {"deployment.environment": "prod"},
            "env": {"OTEL_EXPORTER_OTLP_HEADERS": "x-token=abc"},
        },
        "order": {"autoscaling": {"enabled": True, "maxReplicas": 12}},
    },
}

IMMUTABLE_SELECTOR_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}

# component -> (workload kind, container name, settings class, gRPC port)
SERVICES = {
    "order": ("Deployment", "order-service", OrderSettings, 50051),
    "matching": ("StatefulSet", "matching-service", MatchingSettings, 50060),
    "marketdata": ("Deployment", "marketdata-service", MarketDataSettings, 50052),
}


# --- rendering ----------------------------------------------------------------------------


class Rendered:
    """The objects of one `helm template`, with lookups."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: found {len(found)}"
        return found[0]

    def workload(self, component: str) -> dict[str, Any]:
        return self.get(SERVICES[component][0], f"{PREFIX}-{component}")

    def container(self, component: str) -> dict[str, Any]:
        spec = self.workload(component)["spec"]["template"]["spec"]
        (c,) = [c for c in spec["containers"] if c["name"] == SERVICES[component][1]]
        return c

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for d in self.docs:
            if d["kind"] in ("Deployment", "StatefulSet", "Job"):
                yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]

    def environment(self, component: str) -> dict[str, str]:
        """The container's environment as the kubelet would build it (refs resolved
        against the rendered Secrets and ConfigMaps; existing Secrets give a dummy URL)."""
        c = self.container(component)
        env: dict[str, str] = {}
        for src in c.get("envFrom", []):
            cm = self.get("ConfigMap", src["configMapRef"]["name"])
            env.update(cm["data"])
        for var in c.get("env", []):
            if "value" in var:
                value = var["value"]
                for k, v in env.items():
                    value = value.replace(f"$({k})", v)
                env[var["name"]] = value
            elif "secretKeyRef" in var["valueFrom"]:
                ref = var["valueFrom"]["secretKeyRef"]
                secrets = [s for s in self.all("Secret") if s["metadata"]["name"] == ref["name"]]
                if secrets:
                    env[var["name"]] = secrets[0]["stringData"][ref["key"]]
                else:  # an existing Secret, outside the chart
                    env[var["name"]] = f"{ref['name']}/{ref['key']}"
            elif "resourceFieldRef" in var["valueFrom"]:
                ref = var["valueFrom"]["resourceFieldRef"]
                assert ref["containerName"] == c["name"]
                kind, resource = ref["resource"].split(".")
                env[var["name"]] = str(math.ceil(
                    cpu(c["resources"][kind][resource]) / cpu(ref["divisor"])))
            else:
                field = var["valueFrom"]["fieldRef"]["fieldPath"]
                env[var["name"]] = {"metadata.name": f"{PREFIX}-{component}-0",
                                    "metadata.namespace": NAMESPACE,
                                    "spec.nodeName": "node-1"}[field]
        return env


def cpu(quantity: str | int) -> Fraction:
    """A Kubernetes CPU quantity ("250m", "2", 1.5) in cores."""
    text = str(quantity)
    return Fraction(text[:-1]) / 1000 if text.endswith("m") else Fraction(text)


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return path


def _template(helm, tmp_path: Path, values: dict[str, Any], *extra: str,
              chart: Path = CHART, release: str = RELEASE) -> Rendered:
    proc = helm("template", release, str(chart), "--namespace", NAMESPACE,
                "-f", str(_values_file(tmp_path, values)), *extra)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return Rendered(docs)


@pytest.fixture(scope="session")
def render(helm, tmp_path_factory) -> Callable[[str], Rendered]:
    cache: dict[str, Rendered] = {}

    def get(name: str) -> Rendered:
        if name not in cache:
            cache[name] = _template(helm, tmp_path_factory.mktemp(name), VALUE_SETS[name])
        return cache[name]

    return get


def _selector(obj: dict[str, Any]) -> dict[str, str] | None:
    spec = obj.get("spec", {})
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "PodDisruptionBudget", "ServiceMonitor"):
        return spec["selector"]["matchLabels"]
    if kind == "Service":
        return spec["selector"]
    if kind == "NetworkPolicy":
        return spec["podSelector"]["matchLabels"]
    return None


# --- lint and render every value set ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint(helm, tmp_path, name):
    proc = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                "-f", str(_values_file(tmp_path, VALUE_SETS[name])))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_is_labelled_and_named(render, name):
    r = render(name)
    assert r.docs
    for d in r.docs:
        meta = d["metadata"]
        assert len(meta["name"]) <= 63, meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/name"] == "exchange"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert meta["namespace"] == NAMESPACE


def test_renders_on_the_oldest_supported_kubernetes(helm, tmp_path):
    r = _template(helm, tmp_path, VALUE_SETS["monitoring"], "--kube-version", "1.27.0")
    assert r.all("StatefulSet")


# The longest release name helm accepts (53), without the chart's name in it, so that the
# full name is "<release>-exchange" cut short.
LONG_RELEASE = "trading-production-eu-west-1-primary-cluster-tenant-a"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z])?$|^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # IANA_SVC_NAME
# The controller-revision-hash label a StatefulSet's pods get: "<name>-<hash>", the hash
# (an FNV-32a of the revision, rendered by rand.SafeEncodeString) at most 10 characters.
REVISION_HASH_LEN = 10


# A ConfigMap or Secret key.
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# A label or annotation key: [DNS-1123 subdomain prefix (253) "/"] name (63).
QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_key(key: str, where: str) -> None:
    prefix, _, name = key.rpartition("/")
    assert len(name) <= 63 and QUALIFIED_NAME.match(name), (where, key)
    if prefix:
        assert len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix), (where, key)


def _check_labels(labels: dict[str, Any] | None, where: str) -> None:
    for key, value in (labels or {}).items():
        _check_key(key, where)
        assert len(str(value)) <= 63 and LABEL_VALUE.match(str(value)), (where, key, value)


def check_names_labels_ports(d: dict[str, Any], r: Rendered) -> None:
    """What the API server enforces on an object's names, labels and port names (and the
    StatefulSet controller on the pods it makes), which no OpenAPI schema says: names of
    63 characters in DNS-1123 labels (DNS-1035 for Services), label values of 63, port
    names of 15 (IANA service names), the pods' names and revision-hash labels."""
    meta = d["metadata"]
    where = f"{d['kind']}/{meta['name']}"
    assert len(meta["name"]) <= 63 and DNS_LABEL.match(meta["name"]), where
    _check_labels(meta.get("labels"), where)
    for key in meta.get("annotations") or {}:
        _check_key(key, f"{where} annotations")
    spec = d.get("spec", {})
    _check_labels(_selector(d), f"{where} selector")
    if "template" in spec:
        _check_labels(spec["template"]["metadata"].get("labels"), f"{where} pods")
        for key in spec["template"]["metadata"].get("annotations") or {}:
            _check_key(key, f"{where} pod annotations")
        for c in spec["template"]["spec"]["containers"]:
            for port in c.get("ports", []):
                assert len(port["name"]) <= 15 and PORT_NAME.match(port["name"]), (
                    where, port)
    assert sum(len(k) + len(str(v)) for k, v in (meta.get("annotations") or {}).items()
               ) <= 256 * 1024, f"{where}: annotations over 256 KiB"
    if d["kind"] in ("ConfigMap", "Secret"):
        data = {**d.get("data", {}), **d.get("stringData", {}), **d.get("binaryData", {})}
        for key in data:
            assert len(key) <= 253 and CONFIG_KEY.match(key), (where, key)
        assert sum(len(k) + len(str(v).encode()) for k, v in data.items()) <= 1024 * 1024, (
            f"{where}: data over 1 MiB")
    if d["kind"] == "Service":
        assert DNS_1035.match(meta["name"]), where
        for port in spec["ports"]:
            assert len(port["name"]) <= 15 and PORT_NAME.match(port["name"]), (where, port)
            target = port.get("targetPort")
            if isinstance(target, str):
                assert len(target) <= 15 and PORT_NAME.match(target), (where, port)
    if d["kind"] == "StatefulSet":
        sts = meta["name"]
        assert len(f"{sts}-{'h' * REVISION_HASH_LEN}") <= 63, f"{where}: revision hash"
        # statefulset.kubernetes.io/pod-name and the pod's hostname: "<name>-<ordinal>"
        last_pod = f"{sts}-{spec['replicas'] - 1}"
        assert len(last_pod) <= 63 and DNS_LABEL.match(last_pod), last_pod
        assert r.get("Service", spec["serviceName"])["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("name", ["default", "groups", "monitoring", "tls", "admin"])
def test_a_53_character_release_name_fits_every_name_and_label(helm, tmp_path, name):
    """What the API server enforced with a 35+ character release name: object names in
    63 characters, label values in 63 (with the labels the StatefulSet controller adds to
    its pods), Service names as DNS-1035 labels, port names in 15. Names stay distinct
    per kind and every reference to a chart object finds it."""
    assert len(LONG_RELEASE) == 53
    r = _template(helm, tmp_path, VALUE_SETS[name], release=LONG_RELEASE)
    names: dict[str, set[str]] = {}
    for d in r.docs:
        meta = d["metadata"]
        where = f"{d['kind']}/{meta['name']}"
        assert meta["name"] not in names.setdefault(d["kind"], set()), f"duplicate {where}"
        names[d["kind"]].add(meta["name"])
        assert meta["labels"]["app.kubernetes.io/instance"] == LONG_RELEASE, where
        check_names_labels_ports(d, r)
    # Every ConfigMap and chart Secret a pod refers to is one the chart renders.
    own = {(d["kind"], d["metadata"]["name"]) for d in r.docs}
    for where, spec in r.pod_specs():
        refs = [("ConfigMap", v["configMap"]["name"]) for v in spec.get("volumes", [])
                if "configMap" in v]
        for c in spec["containers"]:
            refs += [("ConfigMap", s["configMapRef"]["name"]) for s in c.get("envFrom", [])]
            refs += [("Secret", e["valueFrom"]["secretKeyRef"]["name"])
                     for e in c.get("env", [])
                     if "secretKeyRef" in e.get("valueFrom", {})
                     and e["valueFrom"]["secretKeyRef"]["name"].startswith("trading-")]
        for ref in refs:
            assert ref in own, (where, ref)
    # The names are cut, not the components' suffixes.
    assert {d["metadata"]["name"].rsplit("-", 1)[-1] for d in r.all("Deployment")} == {
        "order", "marketdata"}
    (sts,) = r.all("StatefulSet")
    assert sts["metadata"]["name"].endswith("-matching")


# --- selectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_selectors_use_only_immutable_labels(render, name):
    r = render(name)
    for d in r.docs:
        sel = _selector(d)
        if sel is None:
            continue
        where = f"{d['kind']}/{d['metadata']['name']}"
        assert set(sel) <= IMMUTABLE_SELECTOR_KEYS, where
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance"} <= set(sel), where
        if d["kind"] in ("Deployment", "StatefulSet"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert sel.items() <= labels.items(), where


def test_selectors_do_not_change_with_versions(helm, tmp_path):
    """A new chart version, app version or image must not touch a selector
    (they are immutable: an upgrade would fail)."""
    before = _template(helm, tmp_path, VALUE_SETS["monitoring"])
    bumped = tmp_path / "chart"
    shutil.copytree(CHART, bumped)
    meta = (bumped / "Chart.yaml").read_text()
    meta = meta.replace("version: 0.1.0", "version: 9.9.9").replace(
        'appVersion: "0.1.0"', 'appVersion: "9.9.9"')
    (bumped / "Chart.yaml").write_text(meta)
    after = _template(helm, tmp_path, VALUE_SETS["monitoring"], "--set", "image.tag=other",
                      chart=bumped)
    assert after.docs[0]["metadata"]["labels"] != before.docs[0]["metadata"]["labels"]
    sel_before = {(d["kind"], d["metadata"]["name"]): _selector(d) for d in before.docs}
    sel_after = {(d["kind"], d["metadata"]["name"]): _selector(d) for d in after.docs}
    assert sel_before == sel_after


def test_each_service_selects_its_own_component(render):
    r = render("default")
    for component in SERVICES:
        pods = r.workload(component)["spec"]["template"]["metadata"]["labels"]
        name = (f"{PREFIX}-matching-headless" if component == "matching"
                else f"{PREFIX}-{component}")
        svc = r.get("Service", name)
        assert svc["spec"]["selector"].items() <= pods.items()
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == component
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        assert ports["grpc"]["port"] == SERVICES[component][3]
        # gRPC Services may be exposed; metrics go through the metrics Service only.
        assert "metrics" not in ports


# --- probes, ports, commands --------------------------------------------------------------


def _port_tls(name: str, component: str) -> bool:
    """Whether the component's gRPC port speaks TLS in value set ``name``."""
    values = VALUE_SETS[name]
    key = "internalTls" if component == "matching" else "tls"
    return bool(values.get(key, {}).get("enabled"))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_probes_are_native_grpc_on_the_grpc_port_or_the_health_port(render, name):
    """Native gRPC probes; on the gRPC port, or, when that port speaks TLS (which
    kubelet probes cannot), on the plaintext health-only port the service opens."""
    r = render(name)
    for component, (_, _, _, port) in SERVICES.items():
        c = r.container(component)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["grpc"] == port
        env = r.environment(component)
        if _port_tls(name, component):
            probe_port = ports["health"]
            assert probe_port == 8086
            assert env["EXCHANGE_HEALTH_LISTEN"] == "0.0.0.0:8086"
        else:
            probe_port = port
            assert "health" not in ports and "EXCHANGE_HEALTH_LISTEN" not in env
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert c[probe]["grpc"] == {"port": probe_port}, (component, probe)
            assert not {"httpGet", "tcpSocket", "exec"} & set(c[probe])


def test_commands_are_console_scripts_of_the_project(render):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    r = render("default")
    for name, spec in r.pod_specs():
        for c in spec["containers"]:
            if c["command"][:2] == ["/bin/sh", "-c"]:
                last = c["args"][0].strip().splitlines()[-1].split()
                assert last[0] == "exec", name
                command = last[1]
            else:
                command = c["command"][0]
            assert command in scripts, (name, command)
            assert command == c["name"], name


def test_metrics_port_and_service(render):
    r = render("default")
    for component in SERVICES:
        ports = {p["name"]: p["containerPort"] for p in r.container(component)["ports"]}
        assert ports["metrics"] == 9464
    svc = r.get("Service", f"{PREFIX}-metrics")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}]
    assert "app.kubernetes.io/component" not in svc["spec"]["selector"]


# --- environment --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
@pytest.mark.parametrize("component", sorted(SERVICES))
def test_environment_satisfies_the_settings_class(render, name, component, monkeypatch,
                                                  tmp_path):
    """Every EXCHANGE_* variable the chart sets is a field of the service's settings
    class, the required ones are set, and the class accepts the values. A matching pod's
    environment includes what its entrypoint exports: for its first pod (a group's) and
    its last (a standby)."""
    r = render(name)
    envs = [r.environment(component)]
    if component == "matching":
        replicas = r.workload("matching")["spec"]["replicas"]
        envs = [{**envs[0], **{f"EXCHANGE_MATCHING_{k.upper()}": v for k, v in
                               _run_entrypoint(r, tmp_path, ordinal).items()}}
                for ordinal in (0, replicas - 1)]
    settings_cls = SERVICES[component][2]
    fields = {f"EXCHANGE_{f.upper()}" for f in settings_cls.model_fields}
    for env in envs:
        exchange_vars = {k for k in env if k.startswith("EXCHANGE_")}
        assert exchange_vars <= fields, exchange_vars - fields
        required = {f"EXCHANGE_{n.upper()}" for n, f in settings_cls.model_fields.items()
                    if f.is_required()}
        assert required <= exchange_vars
        assert {"EXCHANGE_DATABASE_URL", "EXCHANGE_REDIS_URL"} <= exchange_vars

        for k in list(os.environ):
            if k.startswith("EXCHANGE_"):
                monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        settings = settings_cls()
        assert isinstance(settings, CommonSettings)
        listen = getattr(settings, f"{component}_listen")
        assert listen == f"0.0.0.0:{SERVICES[component][3]}"
        assert env["OTEL_SERVICE_NAME"] == SERVICES[component][1]


def test_order_workers_follow_the_pods_cpu(helm, tmp_path):
    """auto: the container's CPU limit when set, else its request, rounded up to cores
    (the Downward API); a number as given."""
    def workers(order: dict[str, Any]) -> str:
        r = _template(helm, tmp_path, {**VALUE_SETS["default"], "order": order})
        return r.environment("order")["EXCHANGE_ORDER_WORKERS"]

    assert workers({}) == "1"  # the default request, 250m
    assert workers({"resources": {"requests": {"cpu": "1500m"}}}) == "2"
    assert workers({"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "4"}}}) == "4"
    assert workers({"config": {"workers": 3}}) == "3"


def test_overload_control_settings_reach_the_order_service(render, helm, tmp_path):
    env = _template(helm, tmp_path, {"order": {"config": {"overload": {
        "enabled": False, "maxWait": 0.2, "maxLatency": 0.5}}}}).environment("order")
    assert (env["EXCHANGE_OVERLOAD_CONTROL"], env["EXCHANGE_OVERLOAD_MAX_WAIT"],
            env["EXCHANGE_OVERLOAD_MAX_LATENCY"]) == ("false", "0.2", "0.5")
    default = render("default").environment("order")
    assert default["EXCHANGE_OVERLOAD_CONTROL"] == "true"


def test_urls_come_from_the_chart_secret(render):
    r = render("default")
    secret = r.get("Secret", f"{PREFIX}-connections")
    assert set(secret["stringData"]) == {"database-url", "redis-url"}
    for component in SERVICES:
        env = {e["name"]: e for e in r.container(component)["env"]}
        for var, key in (("EXCHANGE_DATABASE_URL", "database-url"),
                         ("EXCHANGE_REDIS_URL", "redis-url")):
            assert env[var]["valueFrom"]["secretKeyRef"] == {
                "name": f"{PREFIX}-connections", "key": key}


def test_existing_secrets_replace_the_chart_secret(render):
    r = render("existing-secret")
    assert not [s for s in r.all("Secret")], "no URL Secret when both are existing Secrets"
    for component in SERVICES:
        env = {e["name"]: e for e in r.container(component)["env"]}
        assert env["EXCHANGE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "pg-creds", "key": "uri"}
        assert env["EXCHANGE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-creds", "key": "redis-url"}
    job = r.get("Job", f"{PREFIX}-migrate")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["EXCHANGE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "pg-creds", "key": "uri"}


def test_admin_port_and_bootstrap_admin_key(render, helm, tmp_path):
    r = render("admin")
    env = r.environment("order")
    assert env["EXCHANGE_ADMIN_LISTEN"] == "0.0.0.0:50053"
    assert env["EXCHANGE_RATE_LIMITS"] == "false"
    assert env["EXCHANGE_MAX_STREAMS_PER_CONNECTION"] == "4"
    ports = {p["name"]: p["containerPort"] for p in r.container("order")["ports"]}
    assert ports["admin"] == 50053
    # No Service exposes it: operators port-forward.
    for service in r.all("Service"):
        assert 50053 not in [p["port"] for p in service["spec"]["ports"]]
    job = r.get("Job", f"{PREFIX}-migrate")
    spec = job["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["args"] == ["--bootstrap-admin-key-file", "/etc/exchange/bootstrap/admin-key"]
    mount = {m["name"]: m for m in c["volumeMounts"]}["bootstrap-admin-key"]
    assert mount["mountPath"] == "/etc/exchange/bootstrap" and mount["readOnly"]
    volume = {v["name"]: v for v in spec["volumes"]}["bootstrap-admin-key"]
    assert volume["secret"] == {"secretName": "exchange-admin", "defaultMode": 0o400,
                                "items": [{"key": "admin-key", "path": "admin-key"}]}
    # By default: the admin API on the order port, no bootstrap key.
    default = render("default")
    assert default.environment("order")["EXCHANGE_ADMIN_LISTEN"] == ""
    (c,) = default.get("Job", f"{PREFIX}-migrate")["spec"]["template"]["spec"]["containers"]
    assert "args" not in c
    off = _template(helm, tmp_path, {"order": {"admin": {"enabled": False, "port": 0}}})
    assert off.environment("order")["EXCHANGE_ADMIN_LISTEN"] == "off"


def test_one_existing_secret_keeps_the_other_url(helm, tmp_path):
    r = _template(helm, tmp_path, {"redis": {"existingSecret": "redis-creds"}})
    secret = r.get("Secret", f"{PREFIX}-connections")
    assert set(secret["stringData"]) == {"database-url"}


def test_missing_url_fails_with_a_clear_message(helm, tmp_path):
    proc = helm("template", RELEASE, str(CHART), "--set", "postgresql.url=", check=False)
    assert proc.returncode != 0
    assert "set postgresql.url or postgresql.existingSecret" in proc.stderr


def test_matching_advertises_its_stable_dns_name(render):
    r = render("groups")
    env = r.environment("matching")
    assert env["EXCHANGE_MATCHING_ADVERTISE"] == (
        f"{PREFIX}-matching-0.{PREFIX}-matching-headless.{NAMESPACE}.svc.cluster.local:50060")
    names = [e["name"] for e in r.container("matching")["env"]]
    assert names.index("POD_NAME") < names.index("EXCHANGE_MATCHING_ADVERTISE")
    sts = r.workload("matching")
    headless = r.get("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


def test_otel_settings_reach_the_pods(render):
    env = render("monitoring").environment("order")
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-token=abc"
    # Metrics are the services' own Prometheus endpoint, not an OpenTelemetry exporter.
    assert env["OTEL_METRICS_EXPORTER"] == "none"
    assert env["EXCHANGE_METRICS_LISTEN"] == "0.0.0.0:9464"
    attrs = dict(a.split("=", 1) for a in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attrs["deployment.environment"] == "prod"
    assert attrs["k8s.pod.name"] == f"{PREFIX}-order-0"
    assert attrs["k8s.namespace.name"] == NAMESPACE
    off = render("default").environment("order")
    assert off["OTEL_TRACES_EXPORTER"] == "none"


# --- TLS and service-to-service authentication ---------------------------------------------


def _mounts(r: Rendered, component: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Mount path -> (Secret name, volume) of the container's Secret volumes; every one
    read-only and readable by the pod's group only."""
    c = r.container(component)
    spec = (r.workload(component)["spec"]["template"]["spec"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    out = {}
    for m in c["volumeMounts"]:
        secret = volumes[m["name"]].get("secret")
        if secret is None:
            continue
        assert m["readOnly"] is True, (component, m)
        assert secret["defaultMode"] == 0o440, (component, m)
        out[m["mountPath"]] = (secret["secretName"], secret)
    return out


def _file(mounts: dict[str, tuple[str, dict[str, Any]]], path: str) -> tuple[str, str]:
    """The (Secret, key) a file path in the container comes from."""
    directory, _, name = path.rpartition("/")
    secret_name, secret = mounts[directory]
    (key,) = [i["key"] for i in secret["items"] if i["path"] == name]
    return secret_name, key


def test_tls_files_come_from_the_secrets_and_only_the_own_pair(render):
    r = render("tls")
    want = {
        "order": {
            "EXCHANGE_TLS_CERT_FILE": ("exchange-tls", "tls.crt"),
            "EXCHANGE_TLS_KEY_FILE": ("exchange-tls", "tls.key"),
            "EXCHANGE_TLS_CLIENT_CA_FILE": ("exchange-client-ca", "ca.crt"),
            "EXCHANGE_INTERNAL_TLS_CERT_FILE": ("exchange-internal-tls", "order.crt"),
            "EXCHANGE_INTERNAL_TLS_KEY_FILE": ("exchange-internal-tls", "order.key"),
            "EXCHANGE_INTERNAL_TLS_CA_FILE": ("exchange-internal-tls", "ca.crt"),
        },
        "marketdata": {
            "EXCHANGE_TLS_CERT_FILE": ("exchange-tls", "tls.crt"),
            "EXCHANGE_TLS_KEY_FILE": ("exchange-tls", "tls.key"),
            "EXCHANGE_TLS_CLIENT_CA_FILE": ("exchange-client-ca", "ca.crt"),
        },
        "matching": {
            "EXCHANGE_INTERNAL_TLS_CERT_FILE": ("exchange-internal-tls", "matching.crt"),
            "EXCHANGE_INTERNAL_TLS_KEY_FILE": ("exchange-internal-tls", "matching.key"),
            "EXCHANGE_INTERNAL_TLS_CA_FILE": ("exchange-internal-tls", "ca.crt"),
        },
    }
    for component, files in want.items():
        env = r.environment(component)
        mounts = _mounts(r, component)
        got = {var: _file(mounts, path) for var, path in env.items()
               if var.endswith("_FILE")}
        assert got == files, component
        # A pod gets no key but its own: matching never sees the order key, and back.
        keys = {i["key"] for _, secret in mounts.values() for i in secret["items"]}
        assert keys == {key for _, key in files.values()}, component
        assert "EXCHANGE_INTERNAL_TOKEN" not in env, component
    assert r.environment("order")["EXCHANGE_INTERNAL_TLS_SERVER_NAME"] == "matching-service"
    assert r.environment("matching")["EXCHANGE_INTERNAL_ALLOWED_CLIENTS"] == (
        "order-service,order-canary")
    assert not [s for s in r.all("Secret") if s["metadata"]["name"].endswith("internal-auth")]
    # Services in front of TLS ports do not claim cleartext HTTP/2.
    for svc in r.all("Service"):
        for port in svc["spec"]["ports"]:
            assert "appProtocol" not in port, svc["metadata"]["name"]
    # Without a server name the order service checks each pod's own DNS name.
    assert "EXCHANGE_INTERNAL_TLS_SERVER_NAME" not in render("internal-tls").environment(
        "order")


def test_internal_token_from_the_chart_secret(render):
    r = render("default")
    secret = r.get("Secret", f"{PREFIX}-internal-auth")
    token = secret["stringData"]["internal-token"]
    assert len(token) == 48 and token.isalnum()
    for component in ("order", "matching"):
        env = {e["name"]: e for e in r.container(component)["env"]}
        assert env["EXCHANGE_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{PREFIX}-internal-auth", "key": "internal-token"}
        assert not _mounts(r, component)
    assert "EXCHANGE_INTERNAL_TOKEN" not in r.environment("marketdata")
    # Matching only takes calls that carry it; grpc stays h2c without TLS.
    ports = r.get("Service", f"{PREFIX}-matching-headless")["spec"]["ports"]
    assert ports[0]["appProtocol"] == "kubernetes.io/h2c"

    existing = render("existing-secret")
    assert not [s for s in existing.all("Secret")
                if s["metadata"]["name"] == f"{PREFIX}-internal-auth"]
    for component in ("order", "matching"):
        env = {e["name"]: e for e in existing.container(component)["env"]}
        assert env["EXCHANGE_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "token-creds", "key": "token"}


def test_page_token_key_shared_by_the_public_services(render, helm, tmp_path):
    r = render("default")
    secret = r.get("Secret", f"{PREFIX}-page-tokens")
    key = secret["stringData"]["page-token-key"]
    assert len(key) == 48 and key.isalnum()
    for component in ("order", "marketdata"):
        env = {e["name"]: e for e in r.container(component)["env"]}
        assert env["EXCHANGE_PAGE_TOKEN_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{PREFIX}-page-tokens", "key": "page-token-key"}
    assert "EXCHANGE_PAGE_TOKEN_KEY" not in {e["name"] for e in r.container("matching")["env"]}
    text = (CHART / "templates" / "page-token-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in text
    own = _template(helm, tmp_path, {"pageTokens": {"existingSecret": "paging",
                                                    "existingSecretKey": "k"}})
    assert not [s for s in own.all("Secret")
                if s["metadata"]["name"] == f"{PREFIX}-page-tokens"]
    env = {e["name"]: e for e in own.container("marketdata")["env"]}
    assert env["EXCHANGE_PAGE_TOKEN_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "paging", "key": "k"}


def test_the_token_is_kept_across_upgrades_by_a_lookup():
    """`helm template` has no cluster to look the old Secret up in, so this reads the
    template: the token is taken from the existing Secret when there is one."""
    text = (CHART / "templates" / "internal-auth-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in text
    assert 'index $old.data "internal-token" | b64dec' in text


@pytest.mark.parametrize(("setting", "message"), [
    ("tls.enabled=true", "tls.enabled needs tls.existingSecret"),
    ("tls.clientCaSecret=ca", "tls.clientCaSecret needs tls.enabled"),
    ("internalTls.enabled=true", "internalTls.enabled needs internalTls.existingSecret"),
])
def test_tls_without_its_secret_fails_with_a_clear_message(helm, setting, message):
    proc = helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# --- matching instrument groups -----------------------------------------------------------


@pytest.mark.parametrize(("name", "groups", "standbys"), [
    ("default", 1, 1),
    ("groups", 3, 2),
])
def test_matching_replicas_are_groups_plus_standbys(render, name, groups, standbys):
    sts = render(name).workload("matching")
    assert sts["spec"]["replicas"] == groups + standbys
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"


def _run_entrypoint(r: Rendered, tmp_path: Path, ordinal: int) -> dict[str, str]:
    """Run the matching container's entrypoint as pod <ordinal> would, with a
    stand-in matching-service that prints the ownership variables it was given."""
    c = r.container("matching")
    script = c["args"][0]
    instruments = r.get("ConfigMap", f"{PREFIX}-matching-instruments")["data"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MATCHING_INSTRUMENTS_DIR"] == mounts["instruments"]
    files = tmp_path / "instruments"
    files.mkdir(exist_ok=True)
    for key, value in instruments.items():
        (files / key).write_text(value)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "matching-service"
    fake.write_text("#!/bin/sh\nenv | grep '^EXCHANGE_MATCHING_'\n")
    fake.chmod(0o755)
    proc = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, check=True, timeout=10,
        env={"PATH": f"{bindir}:/usr/bin:/bin",
             "POD_NAME": f"{PREFIX}-matching-{ordinal}",
             "MATCHING_INSTRUMENTS_DIR": str(files)})
    exported = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    return {k.removeprefix("EXCHANGE_MATCHING_").lower(): v for k, v in exported.items()}


def test_matching_pod_ordinal_decides_its_instruments_and_home(render, tmp_path):
    """Pod N may own group N and it is its home (ownership returns to it); standbys
    may own every group's instruments and have no home. Each is named by its pod."""
    r = render("groups")
    replicas = r.workload("matching")["spec"]["replicas"]
    got = [_run_entrypoint(r, tmp_path, n) for n in range(replicas)]
    every = "BTC-USD,ETH-USD,SOL-USD,XRP-USD"
    assert [g["instruments"] for g in got] == [
        "BTC-USD", "ETH-USD,SOL-USD", "XRP-USD", every, every]
    assert [g["home"] for g in got] == ["BTC-USD", "ETH-USD,SOL-USD", "XRP-USD", "", ""]
    assert [g["name"] for g in got] == [f"{PREFIX}-matching-{n}" for n in range(replicas)]
    # A pod beyond the rendered replicas (scaled by hand) is a standby too.
    assert _run_entrypoint(r, tmp_path, 12) == {
        "instruments": every, "home": "", "name": f"{PREFIX}-matching-12"}


def test_matching_without_groups_owns_everything(render, tmp_path):
    r = render("default")
    got = [_run_entrypoint(r, tmp_path, n) for n in range(2)]
    assert got == [{"instruments": "*", "home": "*", "name": f"{PREFIX}-matching-0"},
                   {"instruments": "*", "home": "", "name": f"{PREFIX}-matching-1"}]


def test_ownership_settings_reach_the_matching_pods(render, helm, tmp_path):
    env = render("default").environment("matching")
    assert env["EXCHANGE_MATCHING_RESTART_GRACE"] == "30"
    assert env["EXCHANGE_OWNERSHIP_POLL"] == "0.5"
    assert env["EXCHANGE_OWNER_SESSION_TIMEOUT"] == "10"
    other = _template(helm, tmp_path, {"matching": {"ownership": {
        "restartGraceSeconds": 0, "pollSeconds": 0.25, "sessionTimeoutSeconds": 20}}})
    env = other.environment("matching")
    assert (env["EXCHANGE_MATCHING_RESTART_GRACE"], env["EXCHANGE_OWNERSHIP_POLL"],
            env["EXCHANGE_OWNER_SESSION_TIMEOUT"]) == ("0", "0.25", "20")
    for component in ("order", "marketdata"):
        assert not {k for k in other.environment(component) if "OWNER" in k}


def test_connection_age_reaches_the_public_services(render, helm, tmp_path):
    """Clients are moved to new connections (so to new replicas) every 300 s by default;
    no stream is cut by it (no grace limit). Matching pods are dialled by owner: none."""
    r = render("default")
    for component in ("order", "marketdata"):
        env = r.environment(component)
        assert env["EXCHANGE_GRPC_MAX_CONNECTION_AGE"] == "300", component
        assert env["EXCHANGE_GRPC_MAX_CONNECTION_AGE_GRACE"] == "0", component
    assert "EXCHANGE_GRPC_MAX_CONNECTION_AGE" not in r.environment("matching")
    other = _template(helm, tmp_path, {
        "order": {"config": {"maxConnectionAgeSeconds": 0}},
        "marketdata": {"config": {"maxConnectionAgeSeconds": 1800,
                                  "maxConnectionAgeGraceSeconds": 600}}})
    assert other.environment("order")["EXCHANGE_GRPC_MAX_CONNECTION_AGE"] == "0"
    md = other.environment("marketdata")
    assert (md["EXCHANGE_GRPC_MAX_CONNECTION_AGE"],
            md["EXCHANGE_GRPC_MAX_CONNECTION_AGE_GRACE"]) == ("1800", "600")


def _migrate_job(r: Rendered) -> dict[str, Any]:
    return r.get("Job", f"{PREFIX}-migrate")


def test_instruments_are_created_by_the_migrate_job(render, helm, tmp_path):
    """`instruments` reaches exchange-migrate --instruments as a file that the real parser
    takes, from a ConfigMap that exists before the Job (a hook of lower weight)."""
    r = render("groups")
    job = _migrate_job(r)
    (c,) = job["spec"]["template"]["spec"]["containers"]
    args = c["args"]
    path = args[args.index("--instruments") + 1]
    mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    (volume,) = [v for v in job["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == mount["name"]]
    cm = r.get("ConfigMap", volume["configMap"]["name"])
    assert cm["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert (int(cm["metadata"]["annotations"]["helm.sh/hook-weight"])
            < int(job["metadata"]["annotations"]["helm.sh/hook-weight"]))
    text = cm["data"][path.rsplit("/", 1)[1]]
    parsed = instrument_file.parse(text)
    assert [i.symbol for i in parsed.new] == ["SOL-USD"]
    sol = parsed.new[0]
    assert (str(sol.tick_size), str(sol.lot_size), sol.price_band_bps, sol.maker_fee_bps,
            sol.taker_fee_bps) == ("0.001", "0.01", 1000, -1, 5)
    assert parsed.existing == ["XRP-USD"]
    # Without instruments: no file, no option, no ConfigMap.
    d = render("default")
    (c,) = _migrate_job(d)["spec"]["template"]["spec"]["containers"]
    assert "--instruments" not in c.get("args", [])
    assert not [m for m in d.all("ConfigMap") if "instruments" in m["metadata"]["name"]
                and "matching" not in m["metadata"]["name"]]
    # With the bootstrap admin key too: both files, both options.
    both = _template(helm, tmp_path, {**VALUE_SETS["groups"],
                                      "migrations": {"bootstrapAdminKeySecret": "adm"}})
    (c,) = _migrate_job(both)["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["--bootstrap-admin-key-file", "/etc/exchange/bootstrap/admin-key",
                         "--instruments", "/etc/exchange/instruments/instruments.json"]
    assert {m["name"] for m in c["volumeMounts"]} == {"tmp", "bootstrap-admin-key",
                                                      "instruments"}


def test_the_chart_knows_the_seeded_instruments():
    """The template's list of what exchange-migrate seeds is the seed's."""
    text = (CHART / "templates" / "matching" / "_matching.tpl").read_text()
    block = text[text.index('define "exchange.seededInstruments"'):]
    listed = block.split("-}}", 1)[1].split("{{", 1)[0].split()
    assert listed == [row[1] for row in db.DEFAULT_INSTRUMENTS]


@pytest.mark.parametrize(("values", "message"), [
    ({"matching": {"instrumentGroups": [["BTC-USD"], ["ETH-USD", "SOL-USD"]]}},
     "matching.instrumentGroups: SOL-USD (group 1) is not an instrument the chart creates"),
    ({"matching": {"instrumentGroups": [["BTC-USD", "DOGE-USD"]]},
      "instruments": [{"symbol": "SOL-USD"}]},
     "DOGE-USD (group 0) is not an instrument the chart creates"),
    ({"instruments": [{"symbol": "SOL-USD"}], "migrations": {"enabled": False}},
     "instruments: the migration Job creates them, and migrations.enabled is false"),
])
def test_an_instrument_nobody_creates_is_refused(helm, tmp_path, values, message):
    proc = helm("template", RELEASE, str(CHART), "-f", str(_values_file(tmp_path, values)),
                check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_groups_without_the_migrate_job_are_not_checked(helm, tmp_path):
    """Without the Job the chart creates nothing; whoever migrates makes the instruments."""
    r = _template(helm, tmp_path, {"matching": {"instrumentGroups": [["SOL-USD"]]},
                                   "migrations": {"enabled": False}})
    assert r.get("ConfigMap", f"{PREFIX}-matching-instruments")["data"]["group-0"] == "SOL-USD"


def test_instrument_in_two_groups_is_refused(helm, tmp_path):
    values = {"matching": {"instrumentGroups": [["BTC-USD"], ["ETH-USD", "BTC-USD"]]}}
    proc = helm("template", RELEASE, str(CHART), "-f", str(_values_file(tmp_path, values)),
                check=False)
    assert proc.returncode != 0
    assert "BTC-USD is in groups 0 and 1" in proc.stderr


def test_changed_groups_roll_the_matching_pods(helm, tmp_path):
    a = _template(helm, tmp_path, VALUE_SETS["groups"])
    b = _template(helm, tmp_path, {"matching": {"instrumentGroups": [["BTC-USD", "ETH-USD"]],
                                                "standbys": 2}})

    def checksum(r: Rendered, component: str) -> str:
        return r.workload(component)["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]

    assert checksum(a, "matching") != checksum(b, "matching")
    assert checksum(a, "order") == checksum(b, "order")


# --- pods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_pods_are_hardened(render, name):
    for where, spec in render(name).pod_specs():
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, where
        assert pod_sc["runAsUser"] != 0, where
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert c["resources"]["requests"]["memory"], where
            assert c["resources"]["limits"]["memory"], where
            assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp"}, where


def _matching_anti_affinity(r: Rendered) -> dict[str, Any] | None:
    return r.workload("matching")["spec"]["template"]["spec"].get("affinity", {}).get(
        "podAntiAffinity")


def test_matching_pods_prefer_separate_nodes(render, helm, tmp_path):
    """An owner and its standby on one node fail together: by default the scheduler is
    asked to keep this release's matching pods on different nodes (a preference, so that
    a cluster with fewer nodes than pods still runs them all)."""
    r = render("groups")
    pods = r.workload("matching")["spec"]["template"]["metadata"]["labels"]
    (pref,) = _matching_anti_affinity(r)["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pref["weight"] == 100
    term = pref["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    selector = term["labelSelector"]["matchLabels"]
    assert selector.items() <= pods.items()
    assert selector["app.kubernetes.io/component"] == "matching"
    assert selector["app.kubernetes.io/instance"] == RELEASE
    for component in ("order", "marketdata"):  # stateless: the scheduler's spreading will do
        assert "affinity" not in r.workload(component)["spec"]["template"]["spec"]

    hard = _template(helm, tmp_path, {"matching": {"podAntiAffinity": {
        "type": "hard", "topologyKey": "topology.kubernetes.io/zone"}}})
    (req,) = _matching_anti_affinity(hard)["requiredDuringSchedulingIgnoredDuringExecution"]
    assert req == {**term, "topologyKey": "topology.kubernetes.io/zone"}
    off = _template(helm, tmp_path, {"matching": {"podAntiAffinity": {"type": ""}}})
    assert "affinity" not in off.workload("matching")["spec"]["template"]["spec"]
    # An affinity of one's own keeps its podAntiAffinity; other parts merge with ours.
    own_anti = {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"team": "x"}}, "topologyKey": "rack"}]}
    node = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["matching"]}]}]}}
    own = _template(helm, tmp_path, {"matching": {"affinity": {"podAntiAffinity": own_anti}}})
    assert _matching_anti_affinity(own) == own_anti
    merged = _template(helm, tmp_path, {"matching": {"affinity": {"nodeAffinity": node}}})
    aff = merged.workload("matching")["spec"]["template"]["spec"]["affinity"]
    assert aff["nodeAffinity"] == node
    assert aff["podAntiAffinity"] == _matching_anti_affinity(r)
    for bad in ("matching.podAntiAffinity.type=always", "matching.podAntiAffinity.weight=0",
                "matching.podAntiAffinity.topologyKey=", "matching.podAntiAffinity.bogus=1"):
        assert helm("template", RELEASE, str(CHART), "--set", bad, check=False).returncode, bad


def test_pod_management_policy_is_documented_as_fixed_at_install():
    text = (CHART / "values.yaml").read_text()
    block = text[text.index("\nmatching:\n"):text.index("podManagementPolicy: OrderedReady")]
    comment = block[block.rindex("# -- "):]
    assert "cannot" in comment and "change" in comment, comment


def test_workloads_roll_on_config_change_and_stop_gracefully(helm, tmp_path, render):
    base = render("default")
    changed = _template(helm, tmp_path, {"config": {"logLevel": "DEBUG"}})
    for component in SERVICES:
        tmpl = base.workload(component)["spec"]["template"]
        assert tmpl["spec"]["terminationGracePeriodSeconds"] > 5  # > config.shutdownGrace
        before = tmpl["metadata"]["annotations"]["checksum/config"]
        after = changed.workload(component)["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]
        assert before != after, component


def test_pod_disruption_budgets(render):
    r = render("default")
    pdbs = {p["metadata"]["name"]: p for p in r.all("PodDisruptionBudget")}
    for component in SERVICES:
        pdb = pdbs[f"{PREFIX}-{component}"]
        pods = r.workload(component)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pods.items()
        assert pdb["spec"]["maxUnavailable"] == 1


def test_autoscaling_replaces_replicas(render):
    r = render("monitoring")
    assert "replicas" not in r.workload("order")["spec"]
    hpa = r.get("HorizontalPodAutoscaler", f"{PREFIX}-order")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": f"{PREFIX}-order"}
    assert hpa["spec"]["maxReplicas"] == 12
    assert render("default").workload("order")["spec"]["replicas"] == 3
    assert not render("default").all("HorizontalPodAutoscaler")


class _FakeApiServer:
    """Just enough of a Kubernetes API server for `helm template --dry-run=server`: API
    discovery for the kinds the chart renders, the objects in `objects` (keyed by their
    path), 404 for anything else. Records every request."""

    KINDS = {
        "v1": ["ServiceAccount", "Secret", "ConfigMap", "Service"],
        "apps/v1": ["Deployment", "StatefulSet"],
        "autoscaling/v2": ["HorizontalPodAutoscaler"],
        "policy/v1": ["PodDisruptionBudget"],
        "networking.k8s.io/v1": ["NetworkPolicy"],
        "batch/v1": ["Job"],
        "monitoring.coreos.com/v1": ["ServiceMonitor", "PrometheusRule"],
    }

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.requests: list[tuple[str, str]] = []

    def _answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, path))
        path = path.split("?")[0]
        if method != "GET":
            return 405, {"kind": "Status", "code": 405}
        if path == "/version":
            return 200, {"major": "1", "minor": "36", "gitVersion": "v1.36.0"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0],
                 "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                for gv in self.KINDS if "/" in gv]}
        gv = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
        if gv in self.KINDS:
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                         "resources": [{"name": k.lower() + "s", "singularName": k.lower(),
                                        "namespaced": True, "kind": k,
                                        "verbs": ["get", "list"]} for k in self.KINDS[gv]]}
        if path in self.objects:
            return 200, self.objects[path]
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                     "reason": "NotFound", "code": 404}

    def __enter__(self) -> str:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                code, body = fake._answer(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_turning_autoscaling_on_keeps_the_running_replica_count(helm, tmp_path):
    """With the autoscaler on, an upgrade renders the replicas the Deployment has now:
    leaving the field out of a release that had it resets it to 1 (three-way merge and
    server-side apply alike) until the autoscaler syncs. Rendered against a fake API server
    holding an order Deployment at 7 replicas (helm's lookup reads it) and no market-data
    Deployment (as on install: the field is left to the autoscaler)."""
    live = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{PREFIX}-order", "namespace": NAMESPACE,
                         "labels": {"app.kubernetes.io/managed-by": "Helm"},
                         "annotations": {"meta.helm.sh/release-name": RELEASE,
                                         "meta.helm.sh/release-namespace": NAMESPACE}},
            "spec": {"replicas": 7}}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n"
                          "users: []\n")
    values = {"order": {"autoscaling": {"enabled": True}},
              "marketdata": {"autoscaling": {"enabled": True}}}
    fake = _FakeApiServer({
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{PREFIX}-order": live})
    with fake as url:
        r = _template(helm, tmp_path, values, "--dry-run=server", "--kube-apiserver", url,
                      "--kubeconfig", str(kubeconfig), "--disable-openapi-validation")
    assert ("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{PREFIX}-order") in (
        fake.requests)
    assert {m for m, _ in fake.requests} == {"GET"}  # it only read
    assert r.workload("order")["spec"]["replicas"] == 7
    assert "replicas" not in r.workload("marketdata")["spec"]
    assert r.get("HorizontalPodAutoscaler", f"{PREFIX}-order")
    # Offline (helm template, GitOps tools): nothing to look up, the field is left out.
    offline = _template(helm, tmp_path, values)
    assert "replicas" not in offline.workload("order")["spec"]
    assert "replicas" not in offline.workload("marketdata")["spec"]


# --- migration hook -----------------------------------------------------------------------


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(render):
    r = render("default")
    job = r.get("Job", f"{PREFIX}-migrate")
    ann = job["metadata"]["annotations"]
    assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["exchange-migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Its Secret is a hook too (the release's own objects do not exist yet), created first.
    secret = r.get("Secret", f"{PREFIX}-migrate")
    s_ann = secret["metadata"]["annotations"]
    assert s_ann["helm.sh/hook"] == ann["helm.sh/hook"]
    assert int(s_ann["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
    env = {e["name"]: e for e in c["env"]}
    assert env["EXCHANGE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{PREFIX}-migrate"
    # No ServiceAccount of the release: it would not exist yet at pre-install.
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]


# --- helm test ----------------------------------------------------------------------------


def _health_server(statuses: list[str]) -> tuple[Any, list[str]]:
    """gRPC servers answering the overall health with each of `statuses`; their addresses."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servers, targets = [], []
    for status in statuses:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        servicer.set("", health_pb2.HealthCheckResponse.ServingStatus.Value(status))
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        targets.append(f"127.0.0.1:{port}")
    return servers, targets


def test_helm_test_pod_checks_the_public_services_health(render, helm, tmp_path):
    r = render("default")
    (pod,) = r.all("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    # PodSecurity "restricted", as for the services' pods.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["image"] == r.container("order")["image"]
    # It asks each public Service, by its DNS name and gRPC port.
    python, flag, script, *targets = c["command"]
    assert (python, flag) == ("python", "-c")
    expected = []
    for component in ("order", "marketdata"):
        svc = r.get("Service", f"{PREFIX}-{component}")
        (port,) = svc["spec"]["ports"]
        expected.append(f"{PREFIX}-{component}.{NAMESPACE}.svc.cluster.local:{port['port']}")
    assert targets == expected
    # The script itself, with the image's packages (grpcio-health-checking): it passes when
    # both answer SERVING and fails when one does not.
    import sys

    servers, local = _health_server(["SERVING", "SERVING", "NOT_SERVING"])
    try:
        ok = subprocess.run([sys.executable, "-c", script, *local[:2]], capture_output=True,
                            text=True, timeout=60, check=False)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.split() == [local[0], "SERVING", local[1], "SERVING"]
        bad = subprocess.run([sys.executable, "-c", script, local[0], local[2]],
                             capture_output=True, text=True, timeout=60, check=False)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert f"{local[2]} NOT_SERVING" in bad.stdout
    finally:
        for server in servers:
            server.stop(None)
    # Not rendered when the public ports speak TLS only, nor when switched off.
    assert not render("tls").all("Pod")
    assert not _template(helm, tmp_path, {"tests": {"enabled": False}}).all("Pod")
    labelled = _template(helm, tmp_path, {"tests": {"podLabels": {"gateway-client": "yes"}}})
    assert labelled.all("Pod")[0]["metadata"]["labels"]["gateway-client"] == "yes"


# --- monitoring and network policy --------------------------------------------------------


def test_monitoring_is_off_and_network_policy_on_by_default(render):
    r = render("default")
    assert not r.all("ServiceMonitor")
    pols = {p["metadata"]["name"]: p["spec"] for p in r.all("NetworkPolicy")}
    assert set(pols) == {f"{PREFIX}-{c}" for c in SERVICES}
    order_pods = r.workload("order")["spec"]["template"]["metadata"]["labels"]
    matching = pols[f"{PREFIX}-matching"]
    assert matching["policyTypes"] == ["Ingress"]
    # gRPC from order pods only; metrics as configured.
    (grpc_rule,) = [rule for rule in matching["ingress"]
                    if rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]]
    (peer,) = grpc_rule["from"]
    assert set(peer) == {"podSelector"}
    assert peer["podSelector"]["matchLabels"].items() <= order_pods.items()
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "order"
    assert [rule["ports"] for rule in matching["ingress"]] == [
        [{"port": "grpc", "protocol": "TCP"}], [{"port": "metrics", "protocol": "TCP"}]]
    assert not render("internal-tls").all("NetworkPolicy")


def test_service_monitor_scrapes_the_metrics_service(render):
    r = render("monitoring")
    (sm,) = r.all("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    svc = r.get("Service", f"{PREFIX}-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    # It selects the metrics Service only, not the gRPC ones.
    for other in r.all("Service"):
        if other is not svc:
            assert not (sm["spec"]["selector"]["matchLabels"].items()
                        <= other["metadata"]["labels"].items())


def test_network_policies(render):
    r = render("monitoring")
    pols = {p["metadata"]["name"]: p for p in r.all("NetworkPolicy")}
    assert set(pols) == {f"{PREFIX}-{c}" for c in SERVICES}
    order_pods = r.workload("order")["spec"]["template"]["metadata"]["labels"]
    for component in SERVICES:
        pol = pols[f"{PREFIX}-{component}"]["spec"]
        pods = r.workload(component)["spec"]["template"]["metadata"]["labels"]
        assert pol["podSelector"]["matchLabels"].items() <= pods.items()
        assert pol["policyTypes"] == ["Ingress", "Egress"]
        grpc_rule = next(rule for rule in pol["ingress"]
                         if rule["ports"] == [{"port": "grpc", "protocol": "TCP"}])
        if component == "matching":
            (peer,) = grpc_rule["from"]
            assert peer["podSelector"]["matchLabels"].items() <= order_pods.items()
        else:
            assert grpc_rule["from"] == VALUE_SETS["monitoring"]["networkPolicy"]["clientsFrom"]
        assert any(rule.get("to") == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
                   for rule in pol["egress"])


# --- values schema ------------------------------------------------------------------------


@pytest.mark.parametrize("setting", [
    "order.bogus=1",
    "bogus=1",
    "matching.config.batchSize=5",
    "networkPolicy.egress.allowAll=true",
    "tls.certFile=/x",
    "internalTls.token=abc",
])
def test_schema_rejects_unknown_keys(helm, setting):
    proc = helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0
    key = setting.split("=")[0].rsplit(".", 1)[-1]
    assert key in proc.stderr, proc.stderr
    lint = helm("lint", str(CHART), "--set", setting, check=False)
    assert lint.returncode != 0


@pytest.mark.parametrize("setting", [
    "matching.standbys=-1",
    "order.port=70000",
    "config.logFormat=xml",
    "otel.env.NOT_OTEL=1",
    "matching.instrumentGroups[0][0]=bad symbol",
    "healthPort=0",
    "internalTls.allowedClients[0]=two names",
    "internalAuth.existingSecretKey=",
    "matching.ownership.pollSeconds=0",
    "matching.ownership.restartGraceSeconds=601",
    "matching.ownership.sessionTimeoutSeconds=0.5",
    "matching.ownership.bogus=1",
    "order.config.maxConnectionAgeSeconds=-1",
    "marketdata.config.maxConnectionAgeGraceSeconds=-1",
    "instruments[0].symbol=sol-usd",
    "instruments[0].symbol=SOL-USD,instruments[0].base=SOL",  # rules: all or none
    "instruments[0].symbol=X,instruments[0].bogus=1",
    # the monitoring objects (tests/unit/test_chart_monitoring.py)
    "metrics.prometheusRule.runbookBaseUrl=https://docs.example/runbooks.md#top",
    "metrics.prometheusRule.additionalRuleLabels.severity=page",
    "metrics.prometheusRule.bogus=1",
    "metrics.dashboard.namespace=Not_A_Namespace",
    "metrics.dashboard.labels=null",
])
def test_schema_rejects_bad_values(helm, setting):
    proc = helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0, setting


def test_values_file_documents_every_map(helm):
    """values.yaml and the schema agree: every key of values.yaml is in the schema
    (helm lint checks the reverse for the defaults)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(v: Any, s: dict[str, Any], path: str) -> None:
        if isinstance(v, dict) and s.get("additionalProperties") is False:
            props = s.get("properties", {})
            for k, child in v.items():
                assert k in props or any(
                    re.match(p, k) for p in s.get("patternProperties", {})
                ), f"{path}{k} not in values.schema.json"
                if k in props:
                    walk(child, props[k], f"{path}{k}.")

    walk(values, schema, "")
    assert schema["additionalProperties"] is False


# --- image --------------------------------------------------------------------------------


def test_dockerfile_runs_the_chart_uid_without_root():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] == f"USER {uid}:{uid}"
    assert not any(ln.startswith("ENTRYPOINT") for ln in lines), "the command picks the service"
    assert f"--uid {uid}" in text


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker's patternmatcher reads it: `**` any number of
    directories, `*` and `?` within one path element."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"^{out}$")


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out: the last pattern that matches the
    path or one of its parent directories decides ("!" keeps it)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for raw in patterns:
        keep = raw.startswith("!")
        regex = _dockerignore_regex(raw.lstrip("!").strip("/"))
        if any(regex.match(c) for c in candidates):
            ignored = not keep
    return ignored


def test_dockerignore_matcher_reads_patterns_as_docker_does():
    assert _dockerignored("setup.py", ["*", "!pyproject.toml"])
    assert not _dockerignored("setup.py", ["*", "!setup.py"])
    assert not _dockerignored("exchange/v1/a.py", ["*", "!exchange/"])
    assert _dockerignored("exchange/v1/__pycache__/a.pyc", ["*", "!exchange/", "**/__pycache__"])
    assert _dockerignored("exchange/a.pyc", ["*", "!exchange/", "**/*.pyc"])
    assert _dockerignored("x.egg-info/PKG-INFO", ["**/*.egg-info"])


def test_dockerignore_sends_every_file_the_dockerfile_copies():
    """BuildKit, podman and buildah apply deploy/Dockerfile.dockerignore; a COPY of an
    ignored source fails there (the legacy builder did not read it)."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    patterns = [ln.strip() for ln in
                (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    sources: list[str] = []
    for line in dockerfile.splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources += args[:-1]  # the last one is the destination
    assert {"pyproject.toml", "setup.py", "README.md", "exchange"} <= set(sources)
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        assert not _dockerignored(source, patterns), f"COPY {source}: ignored"
        if path.is_dir():
            files = [f for f in path.rglob("*") if f.is_file()
                     and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".so")
                     and not any(part.endswith(".egg-info") for part in f.parts)]
            assert files, source
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                assert not _dockerignored(rel, patterns), f"COPY {source}: {rel} ignored"
