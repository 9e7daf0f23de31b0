"""Fresh funded accounts, each with its own client library instance, on a running stack:
the tests of the trader features (self-trade prevention, stops, good-till-time, mass
cancel, sessions) use them so that the tests of one module's stack never share an
account."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

from exchange_client import AsyncExchangeClient
from exchange_client.admin import AsyncAdminClient
from exchange_dev.stack import Stack

T = TypeVar("T")


class Traders:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.admin = AsyncAdminClient(stack.order_addr, stack.admin_key)
        self.clients: list[AsyncExchangeClient] = []

    async def new(self, **deposits: str) -> tuple[str, AsyncExchangeClient]:
        """A new account with ``deposits`` (asset -> amount; default plenty of BTC, ETH
        and USD): its name and a client with its key."""
        name = f"t-{uuid.uuid4().hex[:10]}"
        await self.admin.create_account(name)
        key = await self.admin.create_api_key(name)
        for asset, amount in (deposits or {"BTC": "100", "ETH": "1000",
                                           "USD": "10000000"}).items():
            await self.admin.deposit(name, asset, amount, uuid.uuid4().hex)
        client = AsyncExchangeClient(self.stack.order_addr, self.stack.marketdata_addr,
                                     api_key=key.secret, timeout=30)
        self.clients.append(client)
        return name, client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.admin.close()


async def balances(client: AsyncExchangeClient) -> dict[str, tuple[Decimal, Decimal]]:
    """asset -> (available, held)."""
    return {b.asset: (Decimal(b.available), Decimal(b.held))
            for b in await client.get_balances()}


async def held(client: AsyncExchangeClient) -> dict[str, Decimal]:
    """asset -> held, only the assets with something held."""
    return {asset: h for asset, (_, h) in (await balances(client)).items() if h}


async def eventually(check: Callable[[], Awaitable[T]], what: str,
                     timeout: float = 60.0) -> T:
    """``check()`` once it stops failing its assertions (no claim on how soon: the
    timeout only ends a test that would otherwise hang)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"never happened: {what}: {err}") from err
            await asyncio.sleep(0.1)
