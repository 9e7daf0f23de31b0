"""Every object the chart renders, for every value set and for the shortest and the
longest release name, as a Kubernetes v1.36 API server with strict field validation in a
namespace enforcing Pod Security `restricted` would take it:

- the Kubernetes OpenAPI schema of its kind and version, with no unknown field
  (kubernetes-validate, which ships the schemas: no cluster, no network); the
  prometheus-operator kinds are CRDs it has no schema for, and get the other checks;
- what the server checks beyond the schema (test_helm_chart.check_names_labels_ports):
  names and label values within 63 characters, label and annotation keys, ConfigMap keys
  and sizes, port names within 15, the StatefulSet's pod names and revision-hash label;
- the Pod Security `restricted` profile on every pod the chart runs (tests/pod_security.py).

The checkers themselves are checked: each finds an object that breaks its rule.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
from pod_security import pod_templates, violations
from test_helm_chart import (
    LONG_RELEASE,
    RELEASE,
    VALUE_SETS,
    Rendered,
    _template,
    check_names_labels_ports,
)

# The Kubernetes the chart was installed into (issue 15); kubernetes-validate ships it.
KUBERNETES = "1.36.0"
# Custom resources (prometheus-operator): no schema in Kubernetes' own.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}

SETS: dict[str, dict[str, Any]] = {
    **VALUE_SETS,
    "autoscaling": {"order": {"autoscaling": {"enabled": True}},
                    "marketdata": {"autoscaling": {"enabled": True}}},
}


@pytest.fixture(scope="module")
def rendered(helm, tmp_path_factory) -> Callable[[str, str], Rendered]:
    cache: dict[tuple[str, str], Rendered] = {}

    def get(name: str, release: str) -> Rendered:
        if (name, release) not in cache:
            cache[name, release] = _template(helm, tmp_path_factory.mktemp(name), SETS[name],
                                             release=release)
        return cache[name, release]

    return get


def test_the_schemas_of_the_cluster_version_are_there():
    assert KUBERNETES in kubernetes_validate.utils.all_versions()


@pytest.mark.parametrize("release", [RELEASE, LONG_RELEASE])
@pytest.mark.parametrize("name", sorted(SETS))
def test_every_object_is_valid_for_kubernetes(rendered, name, release):
    r = rendered(name, release)
    kinds = set()
    for d in r.docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        kinds.add(d["kind"])
        if (d["apiVersion"], d["kind"]) not in CRD_KINDS:
            try:
                kubernetes_validate.validate(d, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{where}: {err.message} at {list(err.path)}")
        check_names_labels_ports(d, r)
    assert {"Deployment", "StatefulSet", "Job", "Service", "ConfigMap"} <= kinds
    if SETS[name].get("order", {}).get("autoscaling", {}).get("enabled"):
        assert "HorizontalPodAutoscaler" in kinds


@pytest.mark.parametrize("release", [RELEASE, LONG_RELEASE])
@pytest.mark.parametrize("name", sorted(SETS))
def test_every_pod_passes_pod_security_restricted(rendered, name, release):
    pods = [p for d in rendered(name, release).docs for p in pod_templates(d)]
    kinds = {where.split("/")[0] for where, _, _ in pods}
    assert {"Deployment", "StatefulSet", "Job"} <= kinds
    for where, spec, pod_annotations in pods:
        assert violations(spec, pod_annotations) == [], where


def test_strict_validation_refuses_an_unknown_field(rendered):
    """What the server's strict field validation refused: a field its schema lacks."""
    d = copy.deepcopy(rendered("default", RELEASE).workload("order"))
    d["spec"]["template"]["spec"]["containers"][0]["bogus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(d, KUBERNETES, strict=True)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change of the pod spec at ``path`` (dots; a number indexes a list)."""
    def change(spec: dict[str, Any]) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        node: Any = spec
        for k in keys[:-1]:
            node = node[k] if isinstance(k, int) else node.setdefault(k, {})
        node[keys[-1]] = value
    return change


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        node: Any = spec
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return change


C = "containers.0.securityContext"


@pytest.mark.parametrize(("change", "rule"), [
    (_set("hostNetwork", True), "host namespaces"),
    (_set("hostPID", True), "host namespaces"),
    (_set("hostIPC", True), "host namespaces"),
    (_set("volumes", [{"name": "h", "hostPath": {"path": "/"}}]), "hostPath volumes"),
    (_set("volumes", [{"name": "n", "nfs": {"server": "x", "path": "/"}}]),
     "restricted volume types"),
    (_set("containers.0.ports", [{"containerPort": 1, "hostPort": 1}]), "hostPorts"),
    (_set(f"{C}.privileged", True), "privileged"),
    (_set(f"{C}.allowPrivilegeEscalation", True), "allowPrivilegeEscalation"),
    (_del(f"{C}.allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    (_set(f"{C}.capabilities", {"drop": ["NET_RAW"]}), "does not drop ALL"),
    (_set(f"{C}.capabilities.add", ["SYS_ADMIN"]), "adds ['SYS_ADMIN']"),
    (_set(f"{C}.runAsNonRoot", False), "runAsNonRoot"),
    (lambda s: (_del("securityContext.runAsNonRoot")(s), _del(f"{C}.runAsNonRoot")(s)),
     "runAsNonRoot != true"),
    (_set(f"{C}.runAsUser", 0), "runAsUser"),
    (_set("securityContext.runAsUser", 0), "runAsUser"),
    (lambda s: (_del("securityContext.seccompProfile")(s), _del(f"{C}.seccompProfile")(s)),
     "seccompProfile"),
    (_set(f"{C}.seccompProfile", {"type": "Unconfined"}), "seccompProfile"),
    (_set(f"{C}.procMount", "Unmasked"), "procMount"),
    (_set(f"{C}.appArmorProfile", {"type": "Unconfined"}), "AppArmor"),
    (_set(f"{C}.seLinuxOptions", {"type": "spc_t"}), "SELinux"),
    (_set("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "sysctls"),
    (_set(f"{C}.windowsOptions", {"hostProcess": True}), "hostProcess"),
    (_set("initContainers", [{"name": "init", "image": "x"}]), "init"),
])
def test_the_pod_security_checker_finds_each_broken_rule(rendered, change, rule):
    (_, spec, pod_annotations), = pod_templates(rendered("default", RELEASE).workload("order"))
    assert violations(spec, pod_annotations) == []
    broken = copy.deepcopy(spec)
    change(broken)
    found = violations(broken, pod_annotations)
    assert any(rule in v for v in found), found


def test_the_pod_security_checker_reads_apparmor_annotations():
    spec = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {
        "type": "RuntimeDefault"}}, "containers": []}
    key = "container.apparmor.security.beta.kubernetes.io/c"
    assert violations(spec, {key: "runtime/default"}) == []
    assert violations(spec, {key: "unconfined"}) == [f"AppArmor: annotation {key}=unconfined"]


def _label(d: dict[str, Any]) -> None:
    d["metadata"]["labels"]["team"] = "x" * 64


def _label_key(d: dict[str, Any]) -> None:
    d["metadata"]["labels"]["Example.com/team"] = "x"


def _pod_label(d: dict[str, Any]) -> None:
    d["spec"]["template"]["metadata"]["labels"]["team"] = "-x"


def _port_name(d: dict[str, Any]) -> None:
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "grpc-public-order"


def _name(d: dict[str, Any]) -> None:
    d["metadata"]["name"] = "Order"


@pytest.mark.parametrize("change", [_label, _label_key, _pod_label, _port_name, _name])
def test_the_name_checks_find_what_the_server_refused(rendered, change):
    r = rendered("default", RELEASE)
    d = copy.deepcopy(r.workload("order"))
    check_names_labels_ports(d, r)
    change(d)
    with pytest.raises(AssertionError):
        check_names_labels_ports(d, r)


@pytest.mark.parametrize(("key", "value"), [("a/b", "x"), ("big", "x" * (1024 * 1024))])
def test_the_config_map_checks_find_what_the_server_refused(rendered, key, value):
    r = rendered("default", RELEASE)
    (cm, *_) = r.all("ConfigMap")
    cm = copy.deepcopy(cm)
    check_names_labels_ports(cm, r)
    cm["data"][key] = value
    with pytest.raises(AssertionError):
        check_names_labels_ports(cm, r)
