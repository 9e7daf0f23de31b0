"""Typed settings, one object per service, read from ``EXCHANGE_*`` variables.

Validated at start: a missing or malformed setting stops the process with a
message naming the variable (see ``load``).
"""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    database_url: str = Field(description="PostgreSQL URL, e.g. postgresql://postgres@127.0.0.1:5432/exchange")
    redis_url: str = Field(description="Redis URL, e.g. redis://127.0.0.1:6379/0")
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    log_level: str = "INFO"
    # "json" (default, for machines) or "text" (for people).
    log_format: str = "json"
    # Seconds to let in-flight calls finish on SIGTERM.
    shutdown_grace: float = Field(default=5.0, ge=0)
    # gRPC keepalive for servers and channels.
    keepalive_time_ms: int = Field(default=20_000, ge=1000)
    keepalive_timeout_ms: int = Field(default=10_000, ge=1000)
    # Calls gRPC holds for a server that takes them more slowly than they arrive: beyond
    # this many it refuses some at random, and all beyond 3x (the client sees CANCELLED;
    # the call never reached the service). gRPC's own default; raise it to queue longer.
    grpc_max_pending_calls: int = Field(default=1000, ge=1)


class OrderSettings(CommonSettings):
    order_listen: str = "0.0.0.0:50051"
    # Deadline for one command sent to a matching pod.
    matching_timeout: float = Field(default=5.0, gt=0)
    # Seconds an API key or instrument owner stays cached.
    cache_ttl: float = Field(default=30.0, ge=0)
    # client_order_id look-ups run one query at a time, and start at most this often
    # (seconds): under load, waiting look-ups go together and PostgreSQL spends less per
    # order; an idle service answers a lone look-up at once.
    lookup_min_interval: float = Field(default=0.005, ge=0, le=1)


class MatchingSettings(CommonSettings):
    matching_listen: str = "0.0.0.0:50060"
    # The address the order services use to reach this pod.
    matching_advertise: str = "127.0.0.1:50060"
    # Instruments this pod may own: "*" for all, or comma-separated symbols.
    matching_instruments: str = "*"
    # Most commands matched and committed in one batch.
    matching_batch_max: int = Field(default=2000, ge=1)
    # A group commit starts at most this often per instrument (seconds): under load the
    # commands arriving meanwhile make the batch bigger and PostgreSQL spends less per
    # order; a command arriving after a quiet spell is committed at once.
    commit_min_interval: float = Field(default=0.005, ge=0, le=1)
    # Redis stream length kept per instrument (approximate).
    stream_maxlen: int = Field(default=100_000, ge=100)
    # A book snapshot is written after every this many journal events (0 = never).
    snapshot_interval: int = Field(default=50_000, ge=0)
    # Seconds between attempts to take instruments another pod holds (standby).
    ownership_poll: float = Field(default=0.5, gt=0)
    # Seconds of silence after which PostgreSQL ends an owner's lock session
    # (idle_session_timeout) or its open transaction, releasing its instruments:
    # how long a hung or partitioned owner keeps them (a dead one loses them at
    # once). The owner pings every third of it. Too short, and an owner starved
    # of CPU loses its instruments under load.
    owner_session_timeout: float = Field(default=10.0, ge=1.0)
    # Unacknowledged market-data batches kept while Redis is down; beyond
    # this, market data resynchronizes from PostgreSQL instead.
    publish_backlog: int = Field(default=100_000, ge=1)


class MarketDataSettings(CommonSettings):
    marketdata_listen: str = "0.0.0.0:50052"
    # Updates queued per subscriber before it is sent a fresh snapshot instead.
    subscriber_queue: int = Field(default=256, ge=1)
    # ... or when its oldest queued update is older than this many seconds.
    subscriber_max_lag: float = Field(default=0.5, gt=0)
    # StreamOrderBook: at most one delta per subscriber every this many seconds, holding every
    # level change since the previous one merged (0: one delta per read from Redis).
    book_update_interval: float = Field(default=0.05, ge=0, le=5)
    # ... shortened to this many seconds per subscriber of the book when that is less, so a
    # book with few subscribers gets its changes sooner (0: always book_update_interval).
    # About twice what one delivered message costs: fan-out stays under half a core.
    book_update_interval_per_subscriber: float = Field(default=0.0001, ge=0, le=1)
    # Recent trades kept in memory per instrument.
    recent_trades: int = Field(default=1000, ge=1)
    # Processes serving market data on the same port (SO_REUSEPORT; see
    # marketdata_service/workers.py). One is enough below a few hundred subscribers.
    marketdata_workers: int = Field(default=1, ge=1, le=64)


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Read settings or exit with a message naming each bad variable."""
    try:
        return cls()  # type: ignore[call-arg]
    except ValidationError as err:
        lines = []
        for e in err.errors():
            name = "EXCHANGE_" + "_".join(str(p) for p in e["loc"]).upper()
            lines.append(f"  {name}: {e['msg']}")
        print(f"{cls.__name__}: invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
