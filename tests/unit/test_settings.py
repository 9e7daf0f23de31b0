"""Settings read by settings classes: exchange-dev's (DevSettings), the market-data worker's
place (MarketDataSettings), exchange-migrate's (MigrateSettings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from exchange_common.config import MarketDataSettings, MigrateSettings, OrderSettings
from exchange_common.workers import INDEX_ENV, PARENT_ENV, available_cpus, worker_count
from exchange_dev.cli import build_stack
from exchange_dev.settings import DevSettings

URLS = {"database_url": "postgresql://127.0.0.1:1/x", "redis_url": "redis://127.0.0.1:1/0"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No EXCHANGE_* variable of the caller's; the data directory in tmp_path."""
    for name in list(os.environ):
        if name.startswith("EXCHANGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EXCHANGE_DATA_DIR", str(tmp_path))
    return monkeypatch


def test_exchange_dev_listens_where_the_services_would(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EXCHANGE_DEV_API_KEYS", "alice=K1,bob=K2")
    stack, source = build_stack(DevSettings())
    assert source == "EXCHANGE_DEV_API_KEYS" and stack.keys == {"alice": "K1", "bob": "K2"}
    assert stack.listen == {"order": OrderSettings.model_fields["order_listen"].default,
                            "matching": "127.0.0.1:50060",
                            "marketdata": MarketDataSettings.model_fields[
                                "marketdata_listen"].default}
    assert stack.matching_addr == "127.0.0.1:50060"
    assert (stack.pg.port, stack.redis.port) == (55432, 56379)


def test_exchange_dev_takes_its_variables(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "EXCHANGE_DEV_API_KEYS": "alice=K1", "EXCHANGE_DEV_ADMIN_KEY": " admin-key-0123456789 ",
        "EXCHANGE_DEV_TLS": "on", "EXCHANGE_EMBEDDED_PG_PORT": "5001",
        "EXCHANGE_REDIS_URL": "redis://127.0.0.1:6379/3", "EXCHANGE_DATABASE_URL": "",
        "EXCHANGE_ORDER_LISTEN": "127.0.0.1:6001", "EXCHANGE_MATCHING_LISTEN": "0.0.0.0:6002",
        "EXCHANGE_INTERNAL_TOKEN": "the-token", "EXCHANGE_PAGE_TOKEN_KEY": "the-page-key",
    }.items():
        clean_env.setenv(name, value)
    stack, _ = build_stack(DevSettings())
    assert stack.keys == {"alice": "K1"} and stack.admin_key == "admin-key-0123456789"
    assert stack.tls and stack.tls_dir == tmp_path / "tls"
    assert stack.pg is not None and stack.pg.port == 5001  # an empty URL: embedded
    assert stack.redis is None and stack.redis_url == "redis://127.0.0.1:6379/3"
    assert stack.listen["order"] == "127.0.0.1:6001"
    assert stack.matching_addr == "127.0.0.1:6002"  # reached where it listens
    assert (stack.internal_token, stack.page_token_key) == ("the-token", "the-page-key")
    clean_env.setenv("EXCHANGE_MATCHING_ADVERTISE", "matching.example:6002")
    assert build_stack(DevSettings())[0].matching_addr == "matching.example:6002"


@pytest.mark.parametrize(("name", "value"), [
    ("EXCHANGE_EMBEDDED_PG_PORT", "abc"), ("EXCHANGE_EMBEDDED_REDIS_PORT", "70000"),
    ("EXCHANGE_DEV_TLS", "maybe"), ("EXCHANGE_DEV_API_KEYS", "alice"),
    ("EXCHANGE_ORDER_LISTEN", "50051"), ("EXCHANGE_MATCHING_ADVERTISE", "matching:port"),
])
def test_a_bad_dev_setting_names_its_variable(clean_env: pytest.MonkeyPatch, name: str,
                                              value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError) as err:
        DevSettings()
    assert [e["loc"] for e in err.value.errors()] == [(name.removeprefix("EXCHANGE_").lower(),)]


def test_exchange_dev_stops_on_a_bad_setting(tmp_path: Path) -> None:
    """As a process: exit 2, every bad variable named, nothing started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env.update({"EXCHANGE_DATA_DIR": str(tmp_path / "data"), "EXCHANGE_DEV_TLS": "maybe",
                "EXCHANGE_EMBEDDED_PG_PORT": "abc"})
    proc = subprocess.run([sys.executable, "-m", "exchange_dev"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "DevSettings: invalid configuration" in proc.stderr
    assert "EXCHANGE_DEV_TLS" in proc.stderr and "EXCHANGE_EMBEDDED_PG_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()


def test_a_worker_reads_its_place_from_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EXCHANGE_INTERNAL_TOKEN", "internal-token")
    for cls in (MarketDataSettings, OrderSettings):
        clean_env.delenv(INDEX_ENV, raising=False)
        clean_env.delenv(PARENT_ENV, raising=False)
        assert cls(**URLS).worker == 0  # the process that was started
        # What worker 0 sets in a worker it starts.
        clean_env.setenv(INDEX_ENV, "3")
        clean_env.setenv(PARENT_ENV, "4242")
        settings = cls(**URLS)
        assert (settings.worker, settings.worker_parent_pid) == (3, 4242)
        clean_env.delenv(PARENT_ENV)
        with pytest.raises(ValidationError, match="EXCHANGE_WORKER_PARENT_PID"):
            cls(**URLS)
        clean_env.setenv(INDEX_ENV, "one")
        with pytest.raises(ValidationError, match="worker"):
            cls(**URLS)


def test_order_workers_is_a_number_or_auto(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EXCHANGE_INTERNAL_TOKEN", "internal-token")
    settings = OrderSettings(**URLS)
    assert settings.order_workers == "auto"
    assert settings.order_worker_count == available_cpus() >= 1
    for given, count in (("1", 1), (" 4 ", 4), ("AUTO", available_cpus())):
        clean_env.setenv("EXCHANGE_ORDER_WORKERS", given)
        assert OrderSettings(**URLS).order_worker_count == count
    for bad in ("0", "65", "two", "-1", ""):
        clean_env.setenv("EXCHANGE_ORDER_WORKERS", bad)
        with pytest.raises(ValidationError, match="order_workers"):
            OrderSettings(**URLS)
    assert worker_count(3) == 3


def test_auto_is_capped_by_the_containers_cpu_limit(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == cores  # no limit: the affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: 2 processes
    assert available_cpus(tmp_path) == min(cores, 2)
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()  # cgroup v1
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert available_cpus(tmp_path) == cores


def test_migrate_settings(clean_env: pytest.MonkeyPatch) -> None:
    assert MigrateSettings().bootstrap_admin_key == ""
    clean_env.setenv("EXCHANGE_BOOTSTRAP_ADMIN_KEY", "  bootstrap-admin-key-0123  ")
    assert MigrateSettings().bootstrap_admin_key == "bootstrap-admin-key-0123"
    clean_env.setenv("EXCHANGE_BOOTSTRAP_ADMIN_KEY", "short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        MigrateSettings()
