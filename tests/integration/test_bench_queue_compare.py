"""Smoke run of bench/queue_compare.py (a durable queue's append against the group
commit), so that it cannot rot. It needs a NATS JetStream server (NATS_URL, default
127.0.0.1:4222) and the nats-py client of the bench extra; without them the run is
skipped, as the benchmark itself skips: the exchange never needs NATS."""

from __future__ import annotations

import socket

import pytest

from bench import queue_compare

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_without_a_server_it_says_why():
    why = await queue_compare.probe(f"nats://127.0.0.1:{_free_port()}")
    assert why  # nats-py missing or no server: either way a reason, not an exception


async def test_smoke_run_has_its_figures(pg_admin_url):
    args = queue_compare.parser().parse_args(
        ["--batch", "1,10", "--messages", "20", "--sync", "default"])
    if why := await queue_compare.probe(args.nats_url):
        pytest.skip(f"no NATS JetStream to compare with: {why}")
    figures = await queue_compare.run(args, pg_admin_url)
    assert figures is not None
    rows = figures["runs"]
    assert [(r["target"], r["batch"]) for r in rows] == [
        (t, b) for b in (1, 10) for t in
        ("postgres", "fsync", "nats (sync default)", "nats+postgres (sync default)")]
    for r in rows:
        assert r["messages"] == 20
        assert r["payload_bytes_mean"] > 0
        assert 0 < r["message_ms"]["p50"] <= r["message_ms"]["p99"]
        assert r["message_ms"]["p99"] <= r["batch_ms"]["max"]
    assert [(a["sync"], a["batch"], sorted(a["added_ms"])) for a in figures["added"]] == [
        ("default", 1, ["p50", "p99"]), ("default", 10, ["p50", "p99"])]
