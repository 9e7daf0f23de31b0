"""``make run``'s matching topology without starting it: the groups and pods of
``exchange_dev.topology`` (the chart's rule), the restart back-off, the ownership change
lines, the options and variables (a bad one: exit 2 with a message, no traceback), the
Makefile's variables, and the plain ``make run`` left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exchange_dev.cli import banner, build_stack, parse_args, topology_of
from exchange_dev.matching_pods import MatchingPods
from exchange_dev.owners import Owner, changes
from exchange_dev.settings import DevSettings
from exchange_dev.supervisor import Backoff, describe_exit
from exchange_dev.topology import Topology, deal, parse_groups

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("EXCHANGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EXCHANGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXCHANGE_DEV_API_KEYS", "alice=K1,bob=K2")
    return monkeypatch


def test_groups_are_dealt_round_robin_in_instrument_order() -> None:
    assert deal(SYMBOLS, 3) == [["BTC-USD", "XRP-USD"], ["ETH-USD"], ["SOL-USD"]]
    assert deal(SYMBOLS[:3], 3) == [["BTC-USD"], ["ETH-USD"], ["SOL-USD"]]
    assert parse_groups(" BTC-USD ; ETH-USD, SOL-USD ") == [["BTC-USD"],
                                                            ["ETH-USD", "SOL-USD"]]


def test_pods_are_wired_as_the_chart_wires_its_statefulset() -> None:
    # tests/unit/test_helm_chart.py renders these groups with two standbys.
    groups = "BTC-USD;ETH-USD,SOL-USD;XRP-USD"
    pods = Topology.of(None, 2, groups).pods(SYMBOLS)
    every = "BTC-USD,ETH-USD,SOL-USD,XRP-USD"
    assert [p.may_own for p in pods] == ["BTC-USD", "ETH-USD,SOL-USD", "XRP-USD", every, every]
    assert [p.home for p in pods] == ["BTC-USD", "ETH-USD,SOL-USD", "XRP-USD", "", ""]
    assert [p.name for p in pods] == [f"matching-{i}" for i in range(5)]
    assert [p.role for p in pods] == ["group 0", "group 1", "group 2", "standby", "standby"]
    assert pods[3].env == {"EXCHANGE_MATCHING_NAME": "matching-3",
                           "EXCHANGE_MATCHING_HOME": "",
                           "EXCHANGE_MATCHING_INSTRUMENTS": every}
    # No groups (one shard): one pod owning "*", standbys that may own "*".
    pods = Topology(shards=1, standbys=1).pods(SYMBOLS)
    assert [(p.home, p.may_own) for p in pods] == [("*", "*"), ("", "*")]
    assert Topology().is_default and not Topology(standbys=1).is_default


@pytest.mark.parametrize(("make", "message"), [
    (lambda: parse_groups("BTC-USD;;ETH-USD"), "group 1 is empty"),
    (lambda: parse_groups("BTC-USD;ETH-USD,BTC-USD"), "BTC-USD is in groups 0 and 1"),
    (lambda: Topology.of(2, 0, "BTC-USD;ETH-USD;SOL-USD"), "--groups names 3 groups"),
    (lambda: Topology(shards=0), "shards must be 1 to 10"),
    (lambda: Topology(standbys=9), "standbys must be 0 to 8"),
    (lambda: Topology.of(None, 0, "BTC-USD;DOGE-USD").pods(SYMBOLS),
     "do not exist: DOGE-USD"),
    (lambda: Topology(shards=5).pods(SYMBOLS), "5 shards need 5 instruments; there are 4"),
])
def test_a_bad_topology_says_what_is_wrong(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_a_pod_that_keeps_dying_backs_off_exponentially() -> None:
    backoff = Backoff(first=1, limit=30, healthy_after=60)
    assert [backoff.after_death(2) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_death(600) == 1  # it ran well for a while: start over
    assert backoff.after_death(5) == 2
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(3) == "exit code 3"


def test_ownership_changes_are_told_with_pod_names() -> None:
    names = {"127.0.0.1:50061": "matching-1", "127.0.0.1:50063": "matching-3"}.get
    before = {"ETH-USD": Owner("127.0.0.1:50061", 1, True),
              "BTC-USD": Owner("127.0.0.1:50060", 1, True)}
    dead = {**before, "ETH-USD": Owner("127.0.0.1:50061", 1, False)}
    taken = {**before, "ETH-USD": Owner("127.0.0.1:50063", 2, True)}
    assert changes(before, before, lambda a: names(a, a)) == []
    assert changes(before, dead, lambda a: names(a, a)) == [
        "ETH-USD: matching-1 is gone; no owner until a standby takes it"]
    assert changes(dead, taken, lambda a: names(a, a)) == [
        "ETH-USD: matching-1 -> matching-3 (epoch 2)"]


def exchange_dev(*args: str, env: dict[str, str] | None = None,
                 tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    full.update({"EXCHANGE_DATA_DIR": str(tmp_path / "data"), **(env or {})})
    return subprocess.run([sys.executable, "-m", "exchange_dev", *args], env=full,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--shards", "0"], {}, "argument --shards: must be 1 to 10, got 0"),
    (["--shards", "three"], {}, "argument --shards: expected a number, got 'three'"),
    (["--standbys", "-1"], {}, "argument --standbys: must be 0 to 8, got -1"),
    (["--groups", "BTC-USD;BTC-USD"], {}, "BTC-USD is in groups 0 and 1"),
    (["--order-workers", "many"], {}, "argument --order-workers:"),
    (["--md-workers", "0"], {}, "argument --md-workers: must be 1 to 64, got 0"),
    (["--shards", "2", "--groups", "BTC-USD;ETH-USD;SOL-USD"], {},
     "exchange-dev: --shards 2 but --groups names 3 groups"),
    ([], {"EXCHANGE_DEV_SHARDS": "abc"}, "EXCHANGE_DEV_SHARDS"),
    ([], {"EXCHANGE_DEV_STANDBYS": "20"}, "EXCHANGE_DEV_STANDBYS"),
    ([], {"EXCHANGE_DEV_GROUPS": "BTC-USD;"}, "EXCHANGE_DEV_GROUPS"),
    ([], {"EXCHANGE_MARKETDATA_WORKERS": "0"}, "EXCHANGE_MARKETDATA_WORKERS"),
])
def test_a_bad_option_or_variable_stops_exchange_dev(args: list[str], env: dict[str, str],
                                                     message: str, tmp_path: Path) -> None:
    proc = exchange_dev(*args, env=env, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()


def test_options_win_over_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EXCHANGE_DEV_SHARDS", "2")
    clean_env.setenv("EXCHANGE_DEV_STANDBYS", "1")
    assert topology_of(DevSettings(), parse_args([])) == Topology(shards=2, standbys=1)
    assert topology_of(DevSettings(), parse_args(["--shards", "3", "--standbys", "0"])) \
        == Topology(shards=3, standbys=0)
    # Groups given as an option decide the shards, whatever the variable says.
    got = topology_of(DevSettings(), parse_args(["--groups", "BTC-USD;ETH-USD;SOL-USD"]))
    assert got.shards == 3 and got.groups == [["BTC-USD"], ["ETH-USD"], ["SOL-USD"]]


def test_plain_make_run_is_one_matching_process_as_before(clean_env: pytest.MonkeyPatch
                                                          ) -> None:
    settings = DevSettings()
    assert topology_of(settings, parse_args([])).is_default
    stack, source = build_stack(settings)
    assert list(stack.specs) == ["matching", "order", "marketdata"]
    text = banner(stack, source)
    assert "  matching        127.0.0.1:50060        (gRPC, listening on 127.0.0.1:50060)" \
        in text
    assert "    matching      http://127.0.0.1:9465/metrics" in text
    assert "Matching pods" not in text and "matching-" not in text


def test_a_topology_keeps_the_first_pod_on_the_matching_port(clean_env: pytest.MonkeyPatch
                                                             ) -> None:
    stack, _ = build_stack(DevSettings())
    pods = MatchingPods(Topology(shards=3, standbys=1))
    pods.install(stack)
    assert list(pods.services) == ["matching-0", "matching-1", "matching-2", "matching-3"]
    assert pods.address("matching-0") == "127.0.0.1:50060"
    ports = [int(pods.address(p).rpartition(":")[2]) for p in pods.services]
    assert ports == sorted(set(ports)) and ports[1] > 50060
    metrics = [stack.metrics_listen[s] for s in pods.services.values()]
    assert metrics[0] == "127.0.0.1:9465" and len(set(stack.metrics_listen.values())) == 6
    assert pods.name_of(pods.address("matching-2")) == "matching-2"
    assert pods.label("matching") == "matching-0"


def test_make_run_passes_the_topology() -> None:
    def command(*args: str) -> str:
        out = subprocess.run(["make", "-n", "--no-print-directory", "run", *args],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout
        return out.strip().splitlines()[-1]

    assert command() == ".venv/bin/exchange-dev"
    assert command("SHARDS=3", "STANDBYS=1", "ORDER_WORKERS=2", "MD_WORKERS=2") == (
        ".venv/bin/exchange-dev --shards 3 --standbys 1 --order-workers 2 --md-workers 2")
    assert command("GROUPS=BTC-USD;ETH-USD,SOL-USD", "TLS=1") == (
        ".venv/bin/exchange-dev --groups 'BTC-USD;ETH-USD,SOL-USD' --tls")
