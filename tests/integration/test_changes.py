"""Change notifications from the triggers of migration 0003, through ChangeListener."""

from __future__ import annotations

import asyncio

import asyncpg

from exchange_common import db
from exchange_common.changes import APPLICATION_NAME, FALLBACK_MAX_AGE, ChangeListener
from exchange_dev.accounts import ensure_account, ensure_tier


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_every_change_is_notified_and_a_reconnection_flushes_all(
        database_url: str) -> None:
    listener = ChangeListener(database_url, retry=0.1)
    seen: list[str] = []
    for table in ("api_keys", "accounts", "rate_tiers", "admin_keys", "instruments"):
        listener.on(table, lambda table=table: seen.append(table))
    listener.start()
    conn = await asyncpg.connect(database_url)
    try:
        assert await listener.connected(10)
        seen.clear()
        account = await ensure_account(conn, "zoe", "zoe-key-0123456789")
        await wait_for(lambda: "api_keys" in seen)
        await conn.execute("UPDATE accounts SET disabled_at = now() WHERE account_id = $1",
                           account)
        await conn.execute("UPDATE instruments SET status = 'halted' WHERE symbol = 'BTC-USD'")
        await ensure_tier(conn, "vip", orders_per_second=5)
        await db.ensure_admin_key(conn, "an-admin-key-0123456789")
        await wait_for(lambda: {"accounts", "instruments", "rate_tiers", "admin_keys"}
                       <= set(seen))
        # Notified when the transaction commits; never when it rolls back.
        seen.clear()
        async with conn.transaction():
            await conn.execute("UPDATE instruments SET price_band_bps = 5")
            await asyncio.sleep(0.3)
            assert seen == []
        await wait_for(lambda: "instruments" in seen)
        seen.clear()
        try:
            async with conn.transaction():
                await conn.execute("UPDATE instruments SET price_band_bps = 6")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        await asyncio.sleep(0.3)
        assert seen == []

        # The listening session dies: while it is gone caches may not trust themselves
        # beyond FALLBACK_MAX_AGE; back, every callback runs (changes may have been missed).
        generation = listener.generation
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = $1", APPLICATION_NAME)
        await wait_for(lambda: not listener.live or listener.generation > generation)
        assert listener.max_age(30.0) == FALLBACK_MAX_AGE or listener.live
        await wait_for(lambda: listener.live and len(set(seen)) == 5)
        assert listener.max_age(30.0) == 30.0
    finally:
        await conn.close()
        await listener.stop()


async def test_a_change_is_answered_once_every_listener_applied_it(database_url: str) -> None:
    listeners = [ChangeListener(database_url, retry=0.1) for _ in range(3)]
    applied = [0, 0, 0]
    for i, listener in enumerate(listeners):
        listener.on("api_keys", lambda i=i: applied.__setitem__(i, applied[i] + 1))
        listener.start()
    conn = await asyncpg.connect(database_url)
    try:
        for listener in listeners:
            assert await listener.connected(10)
        before = list(applied)
        async with conn.transaction():
            txid = await conn.fetchval("SELECT txid_current()")
            await ensure_account(conn, "yan", "yan-key-0123456789")
        # No polling: when wait_applied returns, every callback has run.
        assert await listeners[0].wait_applied(conn, txid, timeout=5) == set()
        assert [a - b for a, b in zip(applied, before, strict=True)] == [1, 1, 1]

        # A process that listens and never answers (hung) delays the answer by the
        # timeout, no more, and is named.
        mute = await asyncpg.connect(database_url,
                                     server_settings={"application_name": APPLICATION_NAME})
        try:
            await mute.execute("LISTEN exchange_changes")
            async with conn.transaction():
                txid = await conn.fetchval("SELECT txid_current()")
                await conn.execute("UPDATE api_keys SET label = 'x'")
            missing = await listeners[1].wait_applied(conn, txid, timeout=0.5)
            assert missing == {mute.get_server_pid()}
        finally:
            await mute.close()
    finally:
        await conn.close()
        for listener in listeners:
            await listener.stop()
