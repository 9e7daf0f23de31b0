"""The Pod Security Standards' `restricted` profile (which includes `baseline`), as
Kubernetes' Pod Security admission enforces it on a namespace labelled
`pod-security.kubernetes.io/enforce: restricted` (k8s.io/pod-security-admission, the
"latest" policy of v1.36), for checking rendered manifests without a cluster.

``violations(pod_spec, annotations)`` lists what the admission would refuse, one string
per rule broken; empty when the pod may run. Used by tests/unit/test_chart_kubernetes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Volume types `restricted` allows (anything else, hostPath first of all, is refused).
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}
# The only capability `restricted` lets a container add.
ALLOWED_ADD = {"NET_BIND_SERVICE"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def pod_templates(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod spec, pod annotations) of every pod an object runs or makes."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    spec = doc.get("spec", {})
    if kind == "Pod":
        yield f"Pod/{name}", spec, doc["metadata"].get("annotations") or {}
    elif kind == "CronJob":
        tmpl = spec["jobTemplate"]["spec"]["template"]
        yield f"CronJob/{name}", tmpl["spec"], tmpl.get("metadata", {}).get("annotations") or {}
    elif "template" in spec and "spec" in spec["template"]:
        tmpl = spec["template"]
        yield f"{kind}/{name}", tmpl["spec"], tmpl.get("metadata", {}).get("annotations") or {}


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def violations(spec: dict[str, Any], annotations: dict[str, Any] | None = None) -> list[str]:
    out: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    containers = list(_containers(spec))

    # --- baseline ---
    for ns in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(ns):
            out.append(f"host namespaces: {ns}")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("hostProcess: pod")
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if "hostPath" in kinds:
            out.append(f"hostPath volumes: {v['name']}")
        elif not kinds <= ALLOWED_VOLUMES:
            out.append(f"restricted volume types: {v['name']} is {sorted(kinds)}")
    for key, value in (annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or str(value).startswith("localhost/")):
            out.append(f"AppArmor: annotation {key}={value}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctls: {sysctl.get('name')}")
    contexts = [("pod", pod_sc)] + [(c["name"], c.get("securityContext") or {})
                                    for c in containers]
    for where, sc in contexts:
        profile = (sc.get("appArmorProfile") or {}).get("type")
        if profile not in (None, "RuntimeDefault", "Localhost"):
            out.append(f"AppArmor: {where} {profile}")
        se = sc.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            out.append(f"SELinux: {where} {se}")
        if sc.get("runAsUser") == 0:
            out.append(f"runAsUser: {where} runs as uid 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_TYPES:
            out.append(f"seccompProfile: {where} is {seccomp}")
        if where != "pod" and sc.get("runAsNonRoot") is False:
            out.append(f"runAsNonRoot: {where} sets false")
    for c in containers:
        name, sc = c["name"], c.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"hostProcess: {name}")
        if sc.get("privileged"):
            out.append(f"privileged: {name}")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"procMount: {name} {sc['procMount']}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"hostPorts: {name} {port['hostPort']}")
        # --- restricted ---
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"allowPrivilegeEscalation != false: {name}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"capabilities: {name} does not drop ALL")
        added = set(caps.get("add") or []) - ALLOWED_ADD
        if added:
            out.append(f"capabilities: {name} adds {sorted(added)}")
        if pod_sc.get("runAsNonRoot") is not True and sc.get("runAsNonRoot") is not True:
            out.append(f"runAsNonRoot != true: {name} (neither the pod nor the container)")
        if ((pod_sc.get("seccompProfile") or {}).get("type") not in SECCOMP_TYPES
                and (sc.get("seccompProfile") or {}).get("type") not in SECCOMP_TYPES):
            out.append(f"seccompProfile: {name} has none (neither the pod nor the container)")
    return out
