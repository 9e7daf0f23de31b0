"""The rendered chart, and each container of it as a `docker run`."""

from __future__ import annotations

import base64
import math
import os
import re
import secrets
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from image_check.images import IMAGE, LABEL
from image_check.shell import ROOT, CheckFailed

RELEASE = "image-check"
NAMESPACE = "exchange-image-check"


def quantity(text: str | int | float) -> float:
    """A Kubernetes quantity ("250m", "1", "512Mi") as a number."""
    s = str(text)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
             "Gi": 2**30, "Ti": 2**40}
    for suffix in sorted(units, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * units[suffix]
    return float(s)


@dataclass
class Rendered:
    """One ``helm template`` of the chart: its objects by kind and name."""

    objects: dict[tuple[str, str], dict[str, Any]]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        try:
            return self.objects[(kind, name)]
        except KeyError:
            raise CheckFailed(f"the chart rendered no {kind} {name}") from None

    def secret(self, name: str) -> dict[str, str] | None:
        obj = self.objects.get(("Secret", name))
        if obj is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return {**data, **(obj.get("stringData") or {})}


def render(helm: str, values: dict[str, str]) -> Rendered:
    args = [helm, "template", RELEASE, str(ROOT / "deploy/k8s"), "-n", NAMESPACE]
    for key, value in values.items():
        args += ["--set-string" if key.endswith((".url", "Secret", ".tag", ".repository"))
                 else "--set", f"{key}={value}"]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HELM_CACHE_HOME": f"{home}/c", "HELM_CONFIG_HOME": f"{home}/f",
               "HELM_DATA_HOME": f"{home}/d", "KUBECONFIG": f"{home}/none"}
        proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise CheckFailed(f"helm template failed:\n{proc.stderr}")
    objects = {(d["kind"], d["metadata"]["name"]): d
               for d in yaml.safe_load_all(proc.stdout) if d}
    return Rendered(objects)


@dataclass
class Pod:
    """One container of a rendered workload, turned into a ``docker run``."""

    component: str
    pod_name: str
    workload: dict[str, Any]
    rendered: Rendered
    provided: dict[str, dict[str, str]]
    volumes_dir: Path
    hosts: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.workload["spec"]
        return spec["template"]["spec"] if "template" in spec else spec

    @property
    def container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.spec["containers"]
        if len(containers) != 1:
            raise CheckFailed(f"{self.component}: {len(containers)} containers; expected 1")
        return containers[0]

    @property
    def name(self) -> str:
        return f"{LABEL}-{self.component}"

    @property
    def grace(self) -> int:
        return int(self.spec.get("terminationGracePeriodSeconds", 30))

    def secret_value(self, ref: dict[str, Any]) -> str:
        data = self.rendered.secret(ref["name"])
        if data is None:
            data = self.provided.setdefault(ref["name"], {})
            data.setdefault(ref["key"], secrets.token_urlsafe(32))
        if ref["key"] not in data:
            raise CheckFailed(f"Secret {ref['name']} has no key {ref['key']}")
        return data[ref["key"]]

    def config_map(self, name: str) -> dict[str, str]:
        return {k: str(v) for k, v in (self.rendered.get("ConfigMap", name).get("data")
                                       or {}).items()}

    def config_env(self) -> dict[str, str]:
        """The variables of the container's envFrom ConfigMaps."""
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_map(source["configMapRef"]["name"]))
        return env

    def field_value(self, path: str) -> str:
        values = {"metadata.name": self.pod_name, "metadata.namespace": NAMESPACE,
                  "spec.nodeName": socket.gethostname(), "status.podIP": "127.0.0.1",
                  "status.hostIP": "127.0.0.1",
                  "spec.serviceAccountName": self.spec.get("serviceAccountName", "default")}
        if path not in values:
            raise CheckFailed(f"{self.component}: fieldRef {path} is not resolved here")
        return values[path]

    def resource_value(self, ref: dict[str, Any]) -> str:
        section, _, kind = ref["resource"].partition(".")
        resources = self.container.get("resources", {})
        amount = (resources.get(section) or {}).get(kind)
        if amount is None and section == "limits":  # the kubelet: the node's allocatable
            amount = os.cpu_count() if kind == "cpu" else None
        if amount is None:
            amount = 0
        return str(math.ceil(quantity(amount) / quantity(ref.get("divisor", "1"))))

    def resolve_env(self) -> dict[str, str]:
        """The container's environment as the kubelet makes it: envFrom, then env in
        order, each value's $(VAR) expanded from the variables before it."""
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_map(source["configMapRef"]["name"]))
            elif "secretRef" in source:
                env.update(self.rendered.secret(source["secretRef"]["name"]) or {})
            else:
                raise CheckFailed(f"{self.component}: envFrom {source} not supported here")
        for item in self.container.get("env", []):
            if "value" in item:
                value = re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                               lambda m: "$" if m.group(0) == "$$" else
                               env.get(m.group(1), m.group(0)), str(item["value"]))
            elif "valueFrom" in item:
                source = item["valueFrom"]
                if "secretKeyRef" in source:
                    value = self.secret_value(source["secretKeyRef"])
                elif "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    value = self.config_map(ref["name"])[ref["key"]]
                elif "fieldRef" in source:
                    value = self.field_value(source["fieldRef"]["fieldPath"])
                elif "resourceFieldRef" in source:
                    value = self.resource_value(source["resourceFieldRef"])
                else:
                    raise CheckFailed(f"{self.component}: env {item} not supported here")
            else:
                value = ""
            env[item["name"]] = value
        self.env = env
        return env

    def security(self, image_user: str) -> list[str]:
        pod_sc = self.spec.get("securityContext") or {}
        sc = {**pod_sc, **(self.container.get("securityContext") or {})}
        uid = sc.get("runAsUser", image_user.split(":")[0])
        gid = sc.get("runAsGroup", image_user.partition(":")[2] or uid)
        if sc.get("runAsNonRoot") and str(uid) == "0":
            raise CheckFailed(f"{self.component}: runAsNonRoot with uid 0")
        args = ["--user", f"{uid}:{gid}"]
        if "fsGroup" in pod_sc:
            args += ["--group-add", str(pod_sc["fsGroup"])]
        for group in pod_sc.get("supplementalGroups", []):
            args += ["--group-add", str(group)]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        caps = sc.get("capabilities") or {}
        args += [f"--cap-drop={c}" for c in caps.get("drop", [])]
        args += [f"--cap-add={c}" for c in caps.get("add", [])]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            args.append("--privileged")
        weak = [what for what, ok in (
            ("runAsNonRoot", sc.get("runAsNonRoot") is True and str(uid) != "0"),
            ("readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem") is True),
            ("capabilities.drop [ALL]", "ALL" in caps.get("drop", [])),
            ("allowPrivilegeEscalation false", sc.get("allowPrivilegeEscalation") is False),
            ("not privileged", not sc.get("privileged"))) if not ok]
        if weak:  # the check is of the image under the hardened context, so it insists
            raise CheckFailed(f"{self.component}: the chart's securityContext lacks "
                              f"{', '.join(weak)}")
        seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":
            raise CheckFailed(f"{self.component}: seccompProfile {seccomp} not supported here")
        return args

    def mounts(self) -> list[str]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        args: list[str] = []
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            path = mount["mountPath"]
            if "emptyDir" in volume:
                size = (volume["emptyDir"] or {}).get("sizeLimit")
                # an emptyDir is writable by everyone and not noexec (docker's tmpfs is).
                options = "rw,exec,nosuid,nodev,mode=1777"
                if size:
                    options += f",size={int(quantity(size))}"
                args += ["--tmpfs", f"{path}:{options}"]
            elif "configMap" in volume or "secret" in volume:
                source = self.volume_files(mount["name"], volume)
                ro = ",readonly" if mount.get("readOnly") else ""
                args += ["--mount", f"type=bind,source={source},target={path}{ro}"]
            else:
                raise CheckFailed(f"{self.component}: volume {volume} not supported here")
        return args

    def volume_files(self, name: str, volume: dict[str, Any]) -> Path:
        """A ConfigMap or Secret volume's files as the kubelet writes them: its keys (or
        ``items``), ``defaultMode``, owned by root; with an fsGroup, group-owned by it and
        group-readable (the kubelet adds 0440 to a read-only volume's modes)."""
        if "configMap" in volume:
            ref = volume["configMap"]
            data = self.config_map(ref["name"])
        else:
            ref = volume["secret"]
            data = {item["key"]: self.secret_value({"name": ref["secretName"],
                                                    "key": item["key"]})
                    for item in ref.get("items", [])}
            data = data or self.rendered.secret(ref["secretName"]) or {}
        paths = {item["key"]: item["path"] for item in ref.get("items", [])} or \
            {key: key for key in data}
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        mode = int(ref.get("defaultMode", 0o644)) | (0o440 if fs_group is not None else 0)
        source = self.volumes_dir / self.component / name
        source.mkdir(parents=True, exist_ok=True)
        source.chmod(0o755)
        for key, path in paths.items():
            target = source / path
            target.write_text(data[key])
            if os.geteuid() == 0:  # (the check runs as root; a test may not)
                os.chown(target, 0, int(fs_group) if fs_group is not None else 0)
            target.chmod(mode)
        return source

    def docker_args(self, image_user: str, command: list[str] | None = None) -> list[str]:
        """``docker run`` arguments after ``run``: the container as the chart renders it
        (``command`` replaces its command and args, as for a one-off check in it)."""
        env = self.resolve_env()
        args = ["--name", self.name, "--label", LABEL, "--network", "host",
                *self.security(image_user), *self.mounts()]
        limit = (self.container.get("resources", {}).get("limits") or {}).get("memory")
        if limit:
            args += ["--memory", str(int(quantity(limit)))]
        for host in self.hosts:
            args += ["--add-host", f"{host}:127.0.0.1"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        cmd = command if command is not None else self.container.get("command", [])
        rest = [] if command is not None else self.container.get("args", [])
        if cmd:
            args += ["--entrypoint", cmd[0], IMAGE, *cmd[1:], *rest]
        else:
            args += [IMAGE, *rest]
        return args
