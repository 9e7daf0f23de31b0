"""The operator's client: :class:`AsyncAdminClient` for ``exchange.admin.v1.AdminService``.

    async with AsyncAdminClient("127.0.0.1:50051", admin_key=KEY) as admin:
        await admin.create_account("carol")
        key = await admin.create_api_key("carol", label="desk 1")
        print(key.secret)          # shown once

Every call sends the admin key as ``x-admin-key`` and has a deadline of
``timeout`` seconds; failures raise :mod:`exchange_client.errors` types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2
from exchange.order.v1 import order_pb2
from exchange_client.aio import DEFAULT_CHANNEL_OPTIONS, DEFAULT_ORDER_ADDR, DEFAULT_TIMEOUT
from exchange_client.errors import Unauthenticated, from_grpc_error

ADMIN_KEY_MISSING = "ADMIN_KEY_MISSING"
STATUSES = {
    "trading": common_pb2.INSTRUMENT_STATUS_TRADING,
    "cancel-only": common_pb2.INSTRUMENT_STATUS_CANCEL_ONLY,
    "halted": common_pb2.INSTRUMENT_STATUS_HALTED,
}


class AsyncAdminClient:
    """Admin calls on one ``grpc.aio`` channel (the order service's address unless the
    admin API has a port of its own), created on first use in the running loop."""

    def __init__(self, addr: str = DEFAULT_ORDER_ADDR, admin_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, *,
                 channel_options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        self.addr = addr
        self.admin_key = admin_key
        self.timeout = timeout
        self._options = list(channel_options)
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._stub: apb_grpc.AdminServiceStub | None = None

    async def __aenter__(self) -> AsyncAdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _admin(self) -> apb_grpc.AdminServiceStub:
        asyncio.get_running_loop()
        if self._stub is None:
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(self.addr, self._credentials,
                                                        options=self._options)
            else:
                self._channel = grpc.aio.insecure_channel(self.addr, options=self._options)
            self._stub = apb_grpc.AdminServiceStub(self._channel)
        return self._stub

    async def call(self, rpc: str, request: Any, timeout: float | None = None) -> Any:
        """``AdminService.<rpc>(request)`` with the admin key; the response message.
        ``timeout``: the call's deadline in seconds (default: the client's)."""
        if not self.admin_key:
            raise Unauthenticated("no admin key: admin calls need one (admin_key=... / "
                                  "EXCHANGE_ADMIN_KEY)", reason=ADMIN_KEY_MISSING)
        try:
            return await getattr(self._admin(), rpc)(
                request, timeout=timeout or self.timeout,
                metadata=(("x-admin-key", self.admin_key),))
        except grpc.RpcError as err:
            raise from_grpc_error(err) from err

    # -- accounts ------------------------------------------------------------------

    async def create_account(self, name: str, tier: str = "") -> apb.Account:
        return (await self.call("CreateAccount",
                                apb.CreateAccountRequest(name=name, tier=tier))).account

    async def get_account(self, name: str) -> apb.Account:
        return (await self.call("GetAccount", apb.GetAccountRequest(name=name))).account

    async def iter_accounts(self, page_size: int = 0) -> AsyncIterator[apb.Account]:
        token = ""
        while True:
            page = await self.call("ListAccounts", apb.ListAccountsRequest(
                page_size=page_size, page_token=token))
            for account in page.accounts:
                yield account
            token = page.next_page_token
            if not token:
                return

    async def set_account_enabled(self, name: str, enabled: bool) -> apb.Account:
        return (await self.call("SetAccountEnabled", apb.SetAccountEnabledRequest(
            name=name, enabled=enabled))).account

    async def set_account_tier(self, name: str, tier: str) -> apb.Account:
        return (await self.call("SetAccountTier", apb.SetAccountTierRequest(
            name=name, tier=tier))).account

    # -- API keys ------------------------------------------------------------------

    async def create_api_key(self, account: str, label: str = "") -> apb.CreateApiKeyResponse:
        """The new key's listing (``.key``) and its secret (``.secret``, shown once)."""
        return await self.call("CreateApiKey", apb.CreateApiKeyRequest(account=account,
                                                                       label=label))

    async def iter_api_keys(self, account: str = "", prefix: str = "",
                            include_revoked: bool = False) -> AsyncIterator[apb.ApiKey]:
        token = ""
        while True:
            page = await self.call("ListApiKeys", apb.ListApiKeysRequest(
                account=account, prefix=prefix, include_revoked=include_revoked,
                page_token=token))
            for key in page.keys:
                yield key
            token = page.next_page_token
            if not token:
                return

    async def revoke_api_key(self, prefix: str) -> apb.ApiKey:
        return (await self.call("RevokeApiKey", apb.RevokeApiKeyRequest(prefix=prefix))).key

    # -- money ---------------------------------------------------------------------

    async def _transfer(self, rpc: str, account: str, asset: str, amount: str,
                        idempotency_key: str, reference: str) -> apb.TransferResponse:
        return await self.call(rpc, apb.TransferRequest(
            account=account, asset=asset, amount=amount, idempotency_key=idempotency_key,
            reference=reference))

    async def deposit(self, account: str, asset: str, amount: str, idempotency_key: str,
                      reference: str = "") -> apb.TransferResponse:
        """Credit ``amount`` (a decimal string) of ``asset``; the same key again moves
        nothing and answers ``duplicate=True``."""
        return await self._transfer("Deposit", account, asset, amount, idempotency_key,
                                    reference)

    async def withdraw(self, account: str, asset: str, amount: str, idempotency_key: str,
                       reference: str = "") -> apb.TransferResponse:
        return await self._transfer("Withdraw", account, asset, amount, idempotency_key,
                                    reference)

    async def adjust(self, account: str, asset: str, amount: str, idempotency_key: str,
                     reference: str = "") -> apb.TransferResponse:
        """``amount`` is signed ("-1.5" takes 1.5 away)."""
        return await self._transfer("Adjust", account, asset, amount, idempotency_key,
                                    reference)

    async def get_account_balances(self, account: str) -> list[order_pb2.Balance]:
        return list((await self.call("GetAccountBalances", apb.GetAccountBalancesRequest(
            account=account))).balances)

    async def list_assets(self) -> list[apb.Asset]:
        return list((await self.call("ListAssets", apb.ListAssetsRequest())).assets)

    async def set_account_fees(self, account: str, instrument: str, maker_fee_bps: int = 0,
                               taker_fee_bps: int = 0, *, clear: bool = False) -> None:
        """The account's fees on the instrument (``clear``: back to the instrument's)."""
        await self.call("SetAccountFees", apb.SetAccountFeesRequest(
            account=account, instrument=instrument, maker_fee_bps=maker_fee_bps,
            taker_fee_bps=taker_fee_bps, clear=clear))

    async def check_balances(self) -> apb.CheckBalancesResponse:
        return await self.call("CheckBalances", apb.CheckBalancesRequest())

    # -- tiers, instruments, admin keys, audit ------------------------------------------

    async def set_rate_tier(self, tier: apb.RateTier) -> apb.RateTier:
        return (await self.call("SetRateTier", apb.SetRateTierRequest(tier=tier))).tier

    async def list_rate_tiers(self) -> list[apb.RateTier]:
        return list((await self.call("ListRateTiers", apb.ListRateTiersRequest())).tiers)

    async def create_instrument(self, instrument: apb.Instrument) -> apb.Instrument:
        return (await self.call("CreateInstrument", apb.CreateInstrumentRequest(
            instrument=instrument))).instrument

    async def list_instruments(self) -> list[apb.Instrument]:
        return list((await self.call("ListInstruments",
                                     apb.ListInstrumentsRequest())).instruments)

    async def update_instrument(self, request: apb.UpdateInstrumentRequest) -> apb.Instrument:
        return (await self.call("UpdateInstrument", request)).instrument

    async def set_instrument_status(self, symbol: str, status: str) -> apb.Instrument:
        """``status``: "trading", "cancel-only" or "halted"."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        return (await self.call("SetInstrumentStatus", apb.SetInstrumentStatusRequest(
            symbol=symbol, status=STATUSES[status]))).instrument

    async def move_instrument(self, symbol: str, to: str,
                              timeout: float = 10.0) -> apb.MoveInstrumentResponse:
        """Move an instrument to matching pod ``to`` (its EXCHANGE_MATCHING_NAME); answers
        once that pod owns it (the response has the previous owner and epoch), waiting at
        most ``timeout`` seconds (then DeadlineExceeded; the assignment stays)."""
        return await self.call("MoveInstrument", apb.MoveInstrumentRequest(
            symbol=symbol, to=to, timeout_ms=round(timeout * 1000)), timeout=timeout + 5)

    async def list_matching_pods(self) -> list[apb.MatchingPod]:
        """The matching pods that ever registered: live or not, homes, what each owns."""
        return list((await self.call("ListMatchingPods",
                                     apb.ListMatchingPodsRequest())).pods)

    async def create_admin_key(self, name: str) -> apb.CreateAdminKeyResponse:
        return await self.call("CreateAdminKey", apb.CreateAdminKeyRequest(name=name))

    async def list_admin_keys(self, include_revoked: bool = False) -> list[apb.AdminKey]:
        return list((await self.call("ListAdminKeys", apb.ListAdminKeysRequest(
            include_revoked=include_revoked))).keys)

    async def revoke_admin_key(self, prefix: str) -> apb.AdminKey:
        return (await self.call("RevokeAdminKey",
                                apb.RevokeAdminKeyRequest(prefix=prefix))).key

    async def iter_audit(self, target: str = "",
                         limit: int | None = None) -> AsyncIterator[apb.AuditEntry]:
        """Audit entries, newest first (at most ``limit``)."""
        token, seen = "", 0
        while True:
            page = await self.call("ListAuditEntries", apb.ListAuditEntriesRequest(
                target=target, page_token=token,
                page_size=min(limit - seen, 1000) if limit else 0))
            for entry in page.entries:
                yield entry
                seen += 1
                if limit is not None and seen >= limit:
                    return
            token = page.next_page_token
            if not token:
                return
