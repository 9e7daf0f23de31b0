"""The settings of ``exchange-dev`` (``make run``), read from ``EXCHANGE_*`` variables as the
services read theirs (``exchange_common.config``): a malformed one stops it with a message
naming the variable (``config.load``). An empty variable counts as not set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exchange_common.config import MarketDataSettings, MatchingSettings, OrderSettings
from exchange_dev.accounts import parse_dev_keys
from exchange_dev.topology import MAX_SHARDS, MAX_STANDBYS, parse_groups


def _service_default(settings: type[BaseSettings], name: str) -> Any:
    """The default of a service's own setting, so that ``make run`` listens where the
    service would."""
    return settings.model_fields[name].default


class DevSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore",
                                      env_ignore_empty=True)

    # Where the embedded servers keep their data, with the demo keys and the dev certificates
    # (relative to the working directory).
    data_dir: Path = Path(".data")
    # Servers to use instead of embedded ones (PostgreSQL, Redis); empty: embedded.
    database_url: str = ""
    redis_url: str = ""
    # Ports of the embedded servers.
    embedded_pg_port: int = Field(default=55432, ge=1, le=65535)
    embedded_redis_port: int = Field(default=56379, ge=1, le=65535)
    # The demo accounts' API keys, "alice=KEY1,bob=KEY2"; empty: made on the first run and
    # kept in <data_dir>/dev-api-keys. The accounts are in the rate tier "dev".
    dev_api_keys: str = Field(default="", repr=False)
    # The admin key (exchange admin ...); empty: made on the first run and kept in
    # <data_dir>/dev-admin-key.
    dev_admin_key: str = Field(default="", repr=False)
    # TLS on the public ports and mutual TLS from the order service to matching, with
    # certificates made in <data_dir>/tls (also exchange-dev --tls, make run TLS=1).
    dev_tls: bool = False
    # Where the services listen, as for the services themselves (the same variables and
    # defaults); matching_advertise empty: where matching_listen is reached from here.
    order_listen: str = _service_default(OrderSettings, "order_listen")
    matching_listen: str = _service_default(MatchingSettings, "matching_listen")
    matching_advertise: str = ""
    marketdata_listen: str = _service_default(MarketDataSettings, "marketdata_listen")
    # Where each service serves its Prometheus metrics (EXCHANGE_ORDER_METRICS_LISTEN,
    # EXCHANGE_MATCHING_METRICS_LISTEN, EXCHANGE_MARKETDATA_METRICS_LISTEN);
    # exchange top reads these.
    order_metrics_listen: str = "127.0.0.1:9464"
    matching_metrics_listen: str = "127.0.0.1:9465"
    marketdata_metrics_listen: str = "127.0.0.1:9466"
    # Order-service processes on the order port (as the service reads it): a number, or
    # "auto" for one per core.
    order_workers: str = _service_default(OrderSettings, "order_workers")
    # Market-data processes on the market-data port (as the service reads it).
    marketdata_workers: int = Field(
        default=_service_default(MarketDataSettings, "marketdata_workers"), ge=1, le=64)
    # The matching topology (exchange_dev.topology; also --shards, --standbys, --groups,
    # make run SHARDS=... STANDBYS=... GROUPS=...): matching pods that each own a group
    # of instruments, and standbys. Unset: one matching process owning every instrument.
    dev_shards: int | None = Field(default=None, ge=1, le=MAX_SHARDS)
    dev_standbys: int | None = Field(default=None, ge=0, le=MAX_STANDBYS)
    # Groups split by ';', instruments by ',': "BTC-USD;ETH-USD,SOL-USD".
    dev_groups: str = ""
    # Seconds before a dead matching pod of a topology is started again (doubled while
    # it keeps dying within a minute, at most 30 s).
    dev_restart_backoff: float = Field(default=1.0, gt=0, le=30)
    # The services' shared secret and page-token key; empty: random for each run.
    internal_token: str = Field(default="", repr=False)
    page_token_key: str = Field(default="", repr=False)

    @field_validator("dev_api_keys", "dev_admin_key")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("dev_api_keys")
    @classmethod
    def _keys(cls, value: str) -> str:
        parse_dev_keys(value)  # a ValueError names what is wrong
        return value

    @field_validator("order_listen", "matching_listen", "matching_advertise",
                     "marketdata_listen", "order_metrics_listen", "matching_metrics_listen",
                     "marketdata_metrics_listen")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.field_name == "matching_advertise":
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @field_validator("dev_groups")
    @classmethod
    def _groups(cls, value: str) -> str:
        if value.strip():
            parse_groups(value)  # a ValueError names what is wrong
        return value.strip()

    @field_validator("order_workers")
    @classmethod
    def _order_workers(cls, value: str) -> str:
        return OrderSettings._order_workers(value)

    @property
    def api_keys(self) -> dict[str, str]:
        """``dev_api_keys`` as name -> key (empty when not set)."""
        return parse_dev_keys(self.dev_api_keys)
