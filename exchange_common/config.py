"""Typed settings, one object per service, read from ``EXCHANGE_*`` variables.

Validated at start: a missing or malformed setting stops the process with a
message naming the variable (see ``load``).
"""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exchange_common.keys import check_given_admin_key
from exchange_common.workers import worker_count


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
    # the call never reached the service). The order service refuses orders itself long
    # before (overload control: RESOURCE_EXHAUSTED, OVERLOADED); this is the last resort,
    # ten times gRPC's own default so that a burst is queued, not refused at random.
    grpc_max_pending_calls: int = Field(default=10_000, ge=1)
    # Largest message a server takes or sends (bytes). gRPC refuses a bigger one with
    # RESOURCE_EXHAUSTED before the service sees it. 4 MiB (gRPC's default) holds an
    # OrderEntry message of 1,000 commands many times over.
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    # Largest request metadata (headers) a server takes, bytes, counted as HTTP/2 does (name,
    # value and 32 bytes per header, pseudo-headers included); more is RESOURCE_EXHAUSTED.
    # gRPC's own default refuses at random from 8 KiB and always from 16 KiB.
    max_metadata_bytes: int = Field(default=16 * 1024, ge=8 * 1024)
    # Seconds after which a server sends a client's connection GOAWAY, so that the client
    # makes its next calls on a new connection, which may reach another replica (clients
    # keep their connections for ever otherwise, and replicas added later get only new
    # clients). 0: never (the default; the chart sets it for the order and market-data
    # services). gRPC spreads it by +-10% so that connections do not all go at once.
    grpc_max_connection_age: float = Field(default=0.0, ge=0, le=86_400)
    # Seconds the calls still open on a connection at its age get to finish before the
    # connection is closed under them. 0: no limit, a stream runs to its end (an
    # OrderEntry session with cancel-on-disconnect, or a market-data subscription, is
    # never cut by the age).
    grpc_max_connection_age_grace: float = Field(default=0.0, ge=0, le=86_400)

    # TLS on the public port (order service, market data): PEM files. Both empty: plaintext.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    tls_client_ca_file: str = ""
    # A plaintext port serving only grpc.health.v1 (e.g. 0.0.0.0:8086), for probes that
    # cannot speak TLS (Kubernetes gRPC probes); empty: none, health is on the service
    # port only.
    health_listen: str = ""
    # Prometheus metrics (exchange_common/metrics.py) at http://<this>/metrics, e.g.
    # 0.0.0.0:9464; empty: not served (the process still counts). A service with
    # workers serves all of them from worker 0.
    metrics_listen: str = ""

    # Service-to-service authentication (order service -> matching). Mutual TLS when the
    # three files are set: the matching pod serves with this certificate and accepts only
    # clients whose certificate is signed by the CA and names one of
    # ``internal_allowed_clients``; the order service presents its own. Otherwise the
    # shared secret ``internal_token`` travels in the metadata of every call. One of the
    # two is required by the matching pod and the order service.
    internal_tls_cert_file: str = ""
    internal_tls_key_file: str = ""
    internal_tls_ca_file: str = ""
    # The name the order service expects in a matching pod's certificate; empty: the host
    # of the pod's address.
    internal_tls_server_name: str = ""
    # Client certificate names (common name or DNS name) the matching pods accept.
    internal_allowed_clients: str = "order-service"
    internal_token: str = Field(default="", repr=False)

    # HMAC key of page tokens (any string; the same on every replica, so a token one
    # replica issued is good at the next). Empty: a random key per process, and a token
    # only works on the process that issued it.
    page_token_key: str = Field(default="", repr=False)

    # Set by worker 0 in the workers it starts (exchange_common/workers.py), not by hand:
    # this process's worker number (0: the process that was started) and worker 0's pid.
    worker: int = Field(default=0, ge=0)
    worker_parent_pid: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _worker(self) -> CommonSettings:
        if self.worker and not self.worker_parent_pid:
            raise ValueError("EXCHANGE_WORKER needs EXCHANGE_WORKER_PARENT_PID "
                             "(worker 0 sets both in the workers it starts)")
        return self

    @model_validator(mode="after")
    def _tls_pairs(self) -> CommonSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("EXCHANGE_TLS_CERT_FILE and EXCHANGE_TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("EXCHANGE_TLS_CLIENT_CA_FILE needs EXCHANGE_TLS_CERT_FILE and "
                             "EXCHANGE_TLS_KEY_FILE")
        internal = (self.internal_tls_cert_file, self.internal_tls_key_file,
                    self.internal_tls_ca_file)
        if any(internal) and not all(internal):
            raise ValueError("EXCHANGE_INTERNAL_TLS_CERT_FILE, EXCHANGE_INTERNAL_TLS_KEY_FILE "
                             "and EXCHANGE_INTERNAL_TLS_CA_FILE go together")
        return self

    @property
    def internal_tls(self) -> bool:
        return bool(self.internal_tls_cert_file)

    def require_internal_auth(self) -> None:
        """Stop unless calls between services can be authenticated."""
        if not self.internal_tls and not self.internal_token:
            raise ValueError(
                "no service-to-service authentication: set EXCHANGE_INTERNAL_TOKEN (a shared "
                "secret) or EXCHANGE_INTERNAL_TLS_CERT_FILE, EXCHANGE_INTERNAL_TLS_KEY_FILE "
                "and EXCHANGE_INTERNAL_TLS_CA_FILE (mutual TLS)")


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
    # The statements that put new orders' funds on hold (order_service/holds.py) run one
    # at a time and start at most this often (seconds): each writes and waits for a WAL
    # flush, and its cost is mostly per statement, so under load fewer, bigger ones cost
    # PostgreSQL less per order (bench/RESULTS.md, "Issue 13"); an idle service holds a
    # lone order at once.
    hold_min_interval: float = Field(default=0.01, ge=0, le=1)
    # The admin API (exchange.admin.v1.AdminService, x-admin-key): "" serves it on the
    # order port, an address on a port of its own (e.g. 127.0.0.1:50053, for a port that
    # only operators reach), "off" not at all.
    admin_listen: str = ""
    # Per-account rate limits (the account's tier): off switches them off everywhere.
    rate_limits: bool = True
    # Tokens are leased from the shared buckets in Redis this many seconds of an account's
    # rate at a time (at most its burst), so most calls are counted in memory. See
    # order_service/limits.py for what a lease may cost in accuracy.
    rate_limit_lease: float = Field(default=0.25, gt=0, le=10)
    # Failed authentications (unknown, revoked or malformed keys) a peer address may make
    # per minute on one process before its calls are refused without a look-up.
    max_failed_auth_per_minute: int = Field(default=30, ge=1)
    # OrderEntry sessions open at once on one connection.
    max_streams_per_connection: int = Field(default=16, ge=1)
    # Commands in one OrderEntry message; the ones past it are answered with an error.
    max_commands_per_message: int = Field(default=1000, ge=1)
    # Overload control (order_service/admission.py): new orders are refused with
    # RESOURCE_EXHAUSTED (OVERLOADED) while calls wait more than overload_max_wait seconds
    # in gRPC's queue before the process takes them, and beyond a limit of orders in
    # flight that adapts so that they are answered within about overload_max_latency
    # seconds (never more than overload_max_in_flight). False: never (gRPC then refuses
    # at random once grpc_max_pending_calls calls wait).
    overload_control: bool = True
    overload_max_wait: float = Field(default=0.05, gt=0, le=10)
    overload_max_latency: float = Field(default=0.15, gt=0, le=60)
    overload_max_in_flight: int = Field(default=5000, ge=1)
    # Order-service processes on the same port (SO_REUSEPORT; exchange_common/workers.py):
    # a number, or "auto" for the cores this process may use (its CPU affinity capped by
    # the container's CPU limit). One process uses at most one core.
    order_workers: str = "auto"

    @field_validator("order_workers")
    @classmethod
    def _order_workers(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and not (value.isdigit() and 1 <= int(value) <= 64):
            raise ValueError("a number of processes from 1 to 64, or auto")
        return value

    @property
    def order_worker_count(self) -> int:
        return worker_count(self.order_workers)

    @model_validator(mode="after")
    def _internal_auth(self) -> OrderSettings:
        self.require_internal_auth()
        return self


class MatchingSettings(CommonSettings):
    # Internal: loopback unless set (the chart sets 0.0.0.0 and a NetworkPolicy).
    matching_listen: str = "127.0.0.1:50060"
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
    # This pod's name among the matching pods (the chart: the pod name, e.g.
    # "exchange-matching-2"): the name an admin moves instruments to, and the one its
    # next incarnation comes back with. Empty: the first DNS label of the advertise
    # address's host, or the whole advertise address when its host is an IP address or
    # "localhost" (so that processes on one machine get different names).
    matching_name: str = ""
    # Instruments this pod owns by preference ("*", comma-separated symbols, or "": none,
    # a standby); within matching_instruments. While the pod is live, other pods leave
    # them to it, and one that holds them hands them over (failback). An admin move
    # (exchange admin instrument move) overrides it. See matching_service/placement.py.
    matching_home: str = ""
    # Seconds a clean stop (SIGTERM) keeps this pod's home instruments for its next
    # incarnation (the same name): standbys do not take them meanwhile, so a rolling
    # restart moves each instrument once. 0: released at once (a standby takes over).
    matching_restart_grace: float = Field(default=0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _internal_auth(self) -> MatchingSettings:
        self.require_internal_auth()
        return self

    @model_validator(mode="after")
    def _home(self) -> MatchingSettings:
        home = spec_symbols(self.matching_home)
        allowed = spec_symbols(self.matching_instruments)
        if allowed is not None and (home is None or not home <= allowed):
            raise ValueError("EXCHANGE_MATCHING_HOME must be within "
                             "EXCHANGE_MATCHING_INSTRUMENTS (the instruments the pod may own)")
        return self

    @property
    def pod_name(self) -> str:
        """EXCHANGE_MATCHING_NAME, or the name derived from the advertise address."""
        if self.matching_name.strip():
            return self.matching_name.strip()
        host = self.matching_advertise.rpartition(":")[0].strip("[]") or \
            self.matching_advertise
        if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
            return self.matching_advertise
        return host.split(".")[0]


def spec_symbols(spec: str) -> frozenset[str] | None:
    """The symbols of an instrument list setting ("*": None, meaning all)."""
    spec = spec.strip()
    if spec == "*":
        return None
    return frozenset(s.strip() for s in spec.split(",") if s.strip())


def spec_includes(spec: str, symbol: str) -> bool:
    """Whether an instrument list setting ("*" or comma-separated symbols) names ``symbol``."""
    symbols = spec_symbols(spec)
    return symbols is None or symbol in symbols


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
    # A market-data stream (book, L3) that sent nothing for this many seconds gets a
    # Heartbeat with its current sequence; StreamTicker resends the ticker.
    marketdata_heartbeat: float = Field(default=1.0, ge=0.05, le=60)
    # Processes serving market data on the same port (SO_REUSEPORT; see
    # exchange_common/workers.py). One is enough below a few hundred subscribers.
    marketdata_workers: int = Field(default=1, ge=1, le=64)
    # Stream subscriptions (StreamOrderBook, StreamTrades) one process serves at once.
    max_subscribers: int = Field(default=10_000, ge=1)
    # ... and on one connection.
    max_streams_per_connection: int = Field(default=100, ge=1)


class MigrateSettings(BaseSettings):
    """``exchange-migrate`` (the chart's migration Job)."""

    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    # PostgreSQL URL; --database-url wins.
    database_url: str = ""
    # An admin key to create unless it exists (the first admin credential of a new
    # exchange); --bootstrap-admin-key-file wins. Empty: none.
    bootstrap_admin_key: str = Field(default="", repr=False)

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _admin_key(cls, value: str) -> str:
        value = value.strip()
        return check_given_admin_key(value) if value else value


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Read settings or exit with a message naming each bad variable."""
    try:
        return cls()
    except ValidationError as err:
        lines = []
        for e in err.errors():
            if e["loc"]:
                name = "EXCHANGE_" + "_".join(str(p) for p in e["loc"]).upper()
                lines.append(f"  {name}: {e['msg']}")
            else:  # a check across settings: its message names them
                lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        print(f"{cls.__name__}: invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
