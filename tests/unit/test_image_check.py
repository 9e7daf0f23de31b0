"""deploy/tools/image-check turns the rendered chart into `docker run` arguments as the
kubelet would run the containers; checked here on real renders, without docker."""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from helm_tool import find_helm

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))

from image_check import chart  # noqa: E402
from image_check import check as ic  # noqa: E402
from image_check.shell import CheckFailed  # noqa: E402


@pytest.fixture
def check(helm: Any, tmp_path: Path) -> Any:  # helm: skips the test when there is none
    args = argparse.Namespace(work_dir=str(tmp_path), postgres="postgresql://pg@db:5432",
                              database="exchange_image_check", redis="redis://r:6379/14")
    return ic.Check(args)


def helm_binary() -> str:
    binary, _ = find_helm()
    assert binary is not None
    return binary


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def test_matching_runs_hardened_with_its_entrypoint_env_and_volumes(check: Any) -> None:
    pods = check.pods(helm_binary())
    pod = pods["matching"]
    args = pod.docker_args("10001:10001")
    assert flag_values(args, "--user") == ["10001:10001"]
    assert flag_values(args, "--group-add") == ["10001"]
    assert {"--read-only", "--cap-drop=ALL"} <= set(args)
    assert flag_values(args, "--security-opt") == ["no-new-privileges"]
    assert flag_values(args, "--network") == ["host"]
    tmpfs = flag_values(args, "--tmpfs")
    assert tmpfs == [f"/tmp:rw,exec,nosuid,nodev,mode=1777,size={64 * 2**20}"]
    assert flag_values(args, "--memory") == [str(2 * 2**30)]
    # command replaces the entrypoint; the rest of it and args follow the image
    i = args.index(chart.IMAGE)
    assert args[i - 2:i] == ["--entrypoint", "/bin/sh"]
    assert args[i + 1] == "-c" and args[i + 2].rstrip().endswith("exec matching-service")
    # $(POD_NAME) expanded, as the kubelet does
    headless = "image-check-exchange-matching-headless.exchange-image-check.svc.cluster.local"
    assert pod.env["EXCHANGE_MATCHING_ADVERTISE"] == (
        f"image-check-exchange-matching-0.{headless}:{check.ports['matching']}")
    assert pod.env["EXCHANGE_DATABASE_URL"] == "postgresql://pg@db:5432/exchange_image_check"
    assert pod.env["EXCHANGE_REDIS_URL"] == "redis://r:6379/14"
    assert pod.env["EXCHANGE_METRICS_LISTEN"] == f"0.0.0.0:{check.metrics['matching']}"
    # the instruments ConfigMap as read-only files; the entrypoint reads group-<ordinal>
    (mount,) = flag_values(args, "--mount")
    source = Path(mount.split("source=")[1].split(",")[0])
    assert mount.endswith("target=/etc/exchange/instruments,readonly")
    assert (source / "group-0").read_text() == "*"
    # the order pods reach it by its headless name
    assert f"image-check-exchange-matching-0.{headless}:127.0.0.1" in flag_values(
        args, "--add-host")


def test_order_and_matching_share_the_provided_token_and_workers_resolve(check: Any) -> None:
    pods = check.pods(helm_binary())
    order, matching = pods["order"], pods["matching"]
    order.docker_args("10001:10001")
    matching.docker_args("10001:10001")
    token = order.env["EXCHANGE_INTERNAL_TOKEN"]
    assert len(token) >= 32 and token == matching.env["EXCHANGE_INTERNAL_TOKEN"]
    # "auto": requests.cpu 250m, divisor 1, rounded up
    assert order.env["EXCHANGE_ORDER_WORKERS"] == "1"
    assert f"k8s.pod.name={order.pod_name}" in order.env["OTEL_RESOURCE_ATTRIBUTES"]
    assert "$(" not in order.env["OTEL_RESOURCE_ATTRIBUTES"]


def test_migrate_reads_the_admin_key_from_a_secret_volume(check: Any) -> None:
    pod = check.pods(helm_binary())["migrate"]
    args = pod.docker_args("10001:10001")
    assert args[-2:] == ["--bootstrap-admin-key-file", "/etc/exchange/bootstrap/admin-key"]
    (mount,) = flag_values(args, "--mount")
    key_file = Path(mount.split("source=")[1].split(",")[0]) / "admin-key"
    assert key_file.read_text() == check.provided[ic.BOOTSTRAP_SECRET]["admin-key"]
    # defaultMode 0400; with fsGroup the kubelet makes it group-readable
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o440


@pytest.mark.parametrize(("value", "lacks"), [
    ("containerSecurityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
    ("containerSecurityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation"),
    ("containerSecurityContext.capabilities.drop=null", "capabilities.drop"),
])
def test_a_weaker_security_context_fails_the_check(check: Any, value: str,
                                                   lacks: str) -> None:
    key, _, setting = value.partition("=")
    pods = check.pods(helm_binary(), {key: setting})
    with pytest.raises(CheckFailed, match=lacks):
        pods["order"].docker_args("10001:10001")


def test_quantities() -> None:
    assert chart.quantity("250m") == 0.25
    assert chart.quantity("64Mi") == 64 * 2**20
    assert chart.quantity("2Gi") == 2 * 2**30
    assert chart.quantity(1) == 1.0
