"""Mass cancel: every open order of an account (resting or untriggered), optionally one
instrument and/or one side only (CancelAllOrders, and the OrderEntry dead-man timer).

The instruments where the account has open orders come from PostgreSQL (the partial
index orders_account_open); each gets one matching ``cancel_all`` command, a single
command of its journal, and they run concurrently. The owning pod cancels what is open
when the command reaches its loop, releases the holds, and answers with the orders it
cancelled, so the answer never names an order that was not cancelled.

An order placed while the cancel is on its way may survive it (its command came later);
a retry cancels what is still open, so retrying is always safe. When some instruments
fail (an owning pod that cannot be reached, a halted instrument), those that worked stay
cancelled and the call fails with the instruments not done in the ErrorInfo metadata
(``instruments``, comma-separated).
"""

from __future__ import annotations

import asyncio

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common.errors import (
    DeadlineExceeded,
    ExchangeError,
    InvalidArgument,
    Unavailable,
)
from exchange_common.instruments import InstrumentSpec
from order_service.convert import order_from_report
from order_service.orders import Orders, matching_error
from order_service.validation import check_cancel_allowed

SIDES = (cpb.SIDE_UNSPECIFIED, cpb.SIDE_BUY, cpb.SIDE_SELL)
# How much of the caller's deadline is kept to tell it which instruments were not done:
# the wait for a pod that does not answer ends this long before the call's deadline (the
# router notices a deadline within a watchdog tick, then the answer is built and sent).
ANSWER_MARGIN = 0.5


def answer_deadline(orders: Orders, remaining: float | None) -> float:
    """The monotonic deadline of a mass cancel for a caller with ``remaining`` seconds."""
    return orders.deadline(None if remaining is None else max(0.0, remaining - ANSWER_MARGIN))


class CancelAllIncomplete(Unavailable):
    """Some instruments' cancels did not happen; ``cancelled`` holds those that did."""

    def __init__(self, message: str, *, reason: str, metadata: dict[str, str],
                 cancelled: list[opb.Order]) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.cancelled = cancelled


async def cancel_all(orders: Orders, account_id: int, instrument: str, side: int,
                     deadline: float) -> list[opb.Order]:
    """Cancel the account's open orders (of ``instrument`` if not empty, of ``side`` if
    not UNSPECIFIED); the orders cancelled, as they are after the cancel, by instrument
    and order id."""
    if side not in SIDES:
        raise InvalidArgument("side must be SIDE_BUY, SIDE_SELL or unspecified (both)",
                              reason="SIDE_INVALID", field="side")
    spec = await orders.instrument(instrument) if instrument else None
    ids = await orders.store.open_instruments(
        account_id, spec.instrument_id if spec is not None else None, side)
    specs = []
    for instrument_id in ids:
        found = await orders.store.instrument_by_id(instrument_id)
        if found is not None:
            specs.append(found)
    outcomes = await asyncio.gather(
        *(_one(orders, account_id, s, side, deadline) for s in specs), return_exceptions=True)
    cancelled: list[opb.Order] = []
    failed: list[tuple[InstrumentSpec, BaseException]] = []
    for s, outcome in zip(specs, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failed.append((s, outcome))
        else:
            cancelled.extend(outcome)
    if failed:
        raise _incomplete(failed, cancelled)
    return cancelled


async def _one(orders: Orders, account_id: int, spec: InstrumentSpec, side: int,
               deadline: float) -> list[opb.Order]:
    check_cancel_allowed(spec)
    command = mpb.Command(cancel_all=mpb.CancelAll(
        instrument_id=spec.instrument_id, account_id=account_id, side=side))  # type: ignore[arg-type]
    # Idempotent: sent again when its stream broke or the owner moved (a second cancel
    # of everything open cancels what the first left, if anything).
    result = await orders.router.execute(spec.instrument_id, command, deadline,
                                         idempotent=True)
    which = result.WhichOneof("result")
    if which == "error":
        raise matching_error(result.error)
    if which != "cancelled":
        raise Unavailable("the matching engine answered a mass cancel with no list",
                          reason="MATCHING_UNAVAILABLE")
    return [order_from_report(spec, report) for report in result.cancelled.orders]


def _incomplete(failed: list[tuple[InstrumentSpec, BaseException]],
                cancelled: list[opb.Order]) -> ExchangeError:
    """The error of a mass cancel that some instruments did not do: UNAVAILABLE when
    any of them may work on a retry (a pod away, a deadline), else the first error
    (a halted instrument), with the instruments not done in its metadata."""
    names = ",".join(spec.symbol for spec, _ in failed)
    retryable = [err for _, err in failed
                 if isinstance(err, (Unavailable, DeadlineExceeded))
                 or not isinstance(err, ExchangeError)]
    if retryable or len({type(err) for _, err in failed}) > 1:
        return CancelAllIncomplete(
            f"the open orders of {names} could not be cancelled now (the others were); "
            "retry: a retry cancels what is still open", reason="CANCEL_ALL_INCOMPLETE",
            metadata={"instruments": names}, cancelled=cancelled)
    err = failed[0][1]
    assert isinstance(err, ExchangeError)
    err.metadata = {**err.metadata, "instruments": names}
    return err
