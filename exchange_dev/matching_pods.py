"""The matching pods of a ``Topology`` as processes of a ``Stack``: their names, ports,
environment, and the banner's table of who owns what.

Pod 0 is the stack's ``matching`` service, on the matching port of a plain ``make run``
(50060 unless ``EXCHANGE_MATCHING_LISTEN`` says otherwise) and its metrics port (9465);
pod N (``matching-N``) listens on the next free port after pod N-1's, and serves metrics
on the next free port after the stack's other metrics ports (9467, 9468, ...). Which
instruments each pod owns is decided once the database is ready (``Topology.prepare``:
the groups are read from the instruments there).
"""

from __future__ import annotations

import logging
import socket

import asyncpg

from exchange_dev.embedded import free_port
from exchange_dev.owners import Owner
from exchange_dev.stack import Stack
from exchange_dev.topology import Pod, Topology

log = logging.getLogger("exchange-dev")

FIRST = "matching"  # the stack's own matching service is pod 0


def near_port(host: str, start: int, taken: set[int]) -> int:
    """The first port from ``start`` that is not in ``taken`` and can be bound on
    ``host`` now (a free port when none of the next 200 can)."""
    bind_host = "" if host in ("0.0.0.0", "[::]", "::", "*") else host.strip("[]")
    for port in range(start, min(start + 200, 65536)):
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((bind_host, port))
            except OSError:
                continue
        return port
    return free_port(bind_host or "127.0.0.1")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class MatchingPods:
    """The pods of ``topology`` declared on ``stack`` (``install``), wired once the
    database is ready."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.pods: list[Pod] = []
        self.created: list[str] = []
        # Pod name -> stack service name, in start order.
        self.services: dict[str, str] = {}
        self.stack: Stack | None = None

    def install(self, stack: Stack) -> None:
        """Declare pods 1.. on ``stack`` (pod 0 is its ``matching``) with their ports,
        and wire their instruments when ``stack`` prepares the database."""
        self.stack = stack
        self.services = {"matching-0": FIRST}
        host, port = _split(stack.listen[FIRST])
        taken = {_split(a)[1] for a in (*stack.listen.values(), *stack.metrics_listen.values())}
        metrics_host, metrics_port = _split(stack.metrics_listen[FIRST])
        metrics_port = max(_split(a)[1] for a in stack.metrics_listen.values())
        for i in range(1, self.topology.pod_count):
            name = f"matching-{i}"
            port = near_port(host, port + 1, taken)
            taken.add(port)
            metrics_port = near_port(metrics_host, metrics_port + 1, taken)
            taken.add(metrics_port)
            stack.add_matching(name, listen=f"{host}:{port}",
                               metrics_listen=f"{metrics_host}:{metrics_port}")
            self.services[name] = name
        stack.on_prepare = self.wire

    async def wire(self, conn: asyncpg.Connection) -> None:
        """Decide the pods' instruments (creating dev instruments if the shards need
        them) and give each pod its environment."""
        assert self.stack is not None
        self.pods, self.created = await self.topology.prepare(conn)
        for symbol in self.created:
            log.info("created instrument %s so that each of the %d shards owns one",
                     symbol, self.topology.shards)
        grouped = {s for p in self.pods for s in p.home.split(",") if s and s != "*"}
        if self.topology.groups is not None:
            rows = await conn.fetch("SELECT symbol FROM instruments ORDER BY instrument_id")
            left = [r["symbol"] for r in rows if r["symbol"] not in grouped]
            if left:
                log.warning("in no group, so owned by no pod: %s", ", ".join(left))
        for pod in self.pods:
            self.stack.service_extra_env.setdefault(self.services[pod.name], {}).update(pod.env)

    # -- names -------------------------------------------------------------

    def label(self, service: str) -> str:
        """The pod name of a stack service ("matching" -> "matching-0")."""
        return "matching-0" if service == FIRST else service

    def address(self, pod: str) -> str:
        assert self.stack is not None
        return self.stack.addr(self.services[pod])

    def name_of(self, address: str) -> str:
        """The pod advertising ``address`` (the address itself when none does)."""
        for pod in self.services:
            if self.address(pod) == address:
                return pod
        return address

    # -- the banner --------------------------------------------------------

    def banner_lines(self, owners: dict[str, Owner], admin_command: str) -> list[str]:
        """The table of pods (name, address, pid, role, may own, owns now) and how to
        kill one and watch the takeover."""
        assert self.stack is not None
        stack = self.stack
        rows = [("pod", "address", "pid", "role", "may own", "owns now (epoch)")]
        for pod in self.pods:
            address = self.address(pod.name)
            proc = stack.processes.get(self.services[pod.name])
            owned = [f"{s} ({o.epoch})" for s, o in owners.items()
                     if o.held and o.address == address]
            rows.append((pod.name, address, str(proc.pid) if proc else "-", pod.role,
                         "all instruments" if pod.may_own == "*" else pod.may_own,
                         ", ".join(owned) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["", "  Matching pods (as the chart's StatefulSet: pod N owns group N; a "
                 "standby takes", "  over the group of a pod that dies):"]
        lines += ["    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
                  + "  " + r[5] for r in rows]
        unowned = [s for s, o in owners.items() if not o.held]
        if unowned:
            lines.append(f"    owned by no pod: {', '.join(unowned)}")
        victim = self.pods[1] if len(self.pods) > 1 else self.pods[0]
        proc = stack.processes.get(self.services[victim.name])
        lines += [
            "",
            "  Kill a pod and watch trading go on: a standby takes its instruments (logged",
            "  below as it happens), and exchange-dev restarts the pod after a back-off:",
            f"    kill -9 {proc.pid if proc else '<pid>'}        # {victim.name}",
            "  Owners and epochs at any time:",
            f"    {admin_command}",
        ]
        return lines

    def metrics_lines(self) -> list[str]:
        assert self.stack is not None
        return [f"    {pod:<13} {self.stack.metrics_url(service)}"
                for pod, service in self.services.items()]
