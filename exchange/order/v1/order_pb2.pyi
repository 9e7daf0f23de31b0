import datetime

from exchange.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderUpdateKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_UPDATE_KIND_UNSPECIFIED: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_ACCEPTED: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_FILL: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_CANCELLED: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_EXPIRED: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_REJECTED: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_AMENDED: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_TRIGGERED: _ClassVar[OrderUpdateKind]
    ORDER_UPDATE_KIND_SELF_TRADE_PREVENTED: _ClassVar[OrderUpdateKind]

class OrderStatusFilter(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_FILTER_UNSPECIFIED: _ClassVar[OrderStatusFilter]
    ORDER_STATUS_FILTER_OPEN: _ClassVar[OrderStatusFilter]
    ORDER_STATUS_FILTER_CLOSED: _ClassVar[OrderStatusFilter]

class LedgerEntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEDGER_ENTRY_KIND_UNSPECIFIED: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_DEPOSIT: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_WITHDRAWAL: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_ADJUSTMENT: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_HOLD: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_RELEASE: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_TRADE: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_FEE: _ClassVar[LedgerEntryKind]
ORDER_UPDATE_KIND_UNSPECIFIED: OrderUpdateKind
ORDER_UPDATE_KIND_ACCEPTED: OrderUpdateKind
ORDER_UPDATE_KIND_FILL: OrderUpdateKind
ORDER_UPDATE_KIND_CANCELLED: OrderUpdateKind
ORDER_UPDATE_KIND_EXPIRED: OrderUpdateKind
ORDER_UPDATE_KIND_REJECTED: OrderUpdateKind
ORDER_UPDATE_KIND_AMENDED: OrderUpdateKind
ORDER_UPDATE_KIND_TRIGGERED: OrderUpdateKind
ORDER_UPDATE_KIND_SELF_TRADE_PREVENTED: OrderUpdateKind
ORDER_STATUS_FILTER_UNSPECIFIED: OrderStatusFilter
ORDER_STATUS_FILTER_OPEN: OrderStatusFilter
ORDER_STATUS_FILTER_CLOSED: OrderStatusFilter
LEDGER_ENTRY_KIND_UNSPECIFIED: LedgerEntryKind
LEDGER_ENTRY_KIND_DEPOSIT: LedgerEntryKind
LEDGER_ENTRY_KIND_WITHDRAWAL: LedgerEntryKind
LEDGER_ENTRY_KIND_ADJUSTMENT: LedgerEntryKind
LEDGER_ENTRY_KIND_HOLD: LedgerEntryKind
LEDGER_ENTRY_KIND_RELEASE: LedgerEntryKind
LEDGER_ENTRY_KIND_TRADE: LedgerEntryKind
LEDGER_ENTRY_KIND_FEE: LedgerEntryKind

class Order(_message.Message):
    __slots__ = ("order_id", "client_order_id", "instrument", "side", "type", "time_in_force", "price", "quantity", "filled_quantity", "remaining_quantity", "average_fill_price", "state", "post_only", "reason", "create_time", "update_time", "funds", "held", "stop_price", "expire_time", "self_trade_prevention")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_FILL_PRICE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FUNDS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    instrument: str
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    price: str
    quantity: str
    filled_quantity: str
    remaining_quantity: str
    average_fill_price: str
    state: _common_pb2.OrderState
    post_only: bool
    reason: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    funds: str
    held: str
    stop_price: str
    expire_time: _timestamp_pb2.Timestamp
    self_trade_prevention: _common_pb2.SelfTradePrevention
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., instrument: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., filled_quantity: _Optional[str] = ..., remaining_quantity: _Optional[str] = ..., average_fill_price: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.OrderState, str]] = ..., post_only: _Optional[bool] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., funds: _Optional[str] = ..., held: _Optional[str] = ..., stop_price: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., self_trade_prevention: _Optional[_Union[_common_pb2.SelfTradePrevention, str]] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("trade_id", "order_id", "client_order_id", "instrument", "side", "price", "quantity", "liquidity", "time", "fee", "fee_asset")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    FEE_ASSET_FIELD_NUMBER: _ClassVar[int]
    trade_id: str
    order_id: str
    client_order_id: str
    instrument: str
    side: _common_pb2.Side
    price: str
    quantity: str
    liquidity: _common_pb2.Liquidity
    time: _timestamp_pb2.Timestamp
    fee: str
    fee_asset: str
    def __init__(self, trade_id: _Optional[str] = ..., order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., instrument: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., liquidity: _Optional[_Union[_common_pb2.Liquidity, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fee: _Optional[str] = ..., fee_asset: _Optional[str] = ...) -> None: ...

class CreateOrderRequest(_message.Message):
    __slots__ = ("instrument", "side", "type", "time_in_force", "price", "quantity", "client_order_id", "post_only", "funds", "self_trade_prevention", "stop_price", "expire_time")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    FUNDS_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    price: str
    quantity: str
    client_order_id: str
    post_only: bool
    funds: str
    self_trade_prevention: _common_pb2.SelfTradePrevention
    stop_price: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, instrument: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., client_order_id: _Optional[str] = ..., post_only: _Optional[bool] = ..., funds: _Optional[str] = ..., self_trade_prevention: _Optional[_Union[_common_pb2.SelfTradePrevention, str]] = ..., stop_price: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateOrderResponse(_message.Message):
    __slots__ = ("order", "fills")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    order: Order
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class AmendOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id", "price", "quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    price: str
    quantity: str
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ...) -> None: ...

class AmendOrderResponse(_message.Message):
    __slots__ = ("order", "fills")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    order: Order
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ...) -> None: ...

class OrderEntryCommand(_message.Message):
    __slots__ = ("create", "cancel", "amend")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    AMEND_FIELD_NUMBER: _ClassVar[int]
    create: CreateOrderRequest
    cancel: CancelOrderRequest
    amend: AmendOrderRequest
    def __init__(self, create: _Optional[_Union[CreateOrderRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelOrderRequest, _Mapping]] = ..., amend: _Optional[_Union[AmendOrderRequest, _Mapping]] = ...) -> None: ...

class SessionOptions(_message.Message):
    __slots__ = ("cancel_on_disconnect", "dead_man_seconds", "order_updates", "updates_after_sequence")
    CANCEL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    DEAD_MAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ORDER_UPDATES_FIELD_NUMBER: _ClassVar[int]
    UPDATES_AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    cancel_on_disconnect: bool
    dead_man_seconds: int
    order_updates: bool
    updates_after_sequence: int
    def __init__(self, cancel_on_disconnect: _Optional[bool] = ..., dead_man_seconds: _Optional[int] = ..., order_updates: _Optional[bool] = ..., updates_after_sequence: _Optional[int] = ...) -> None: ...

class OrderEntryRequest(_message.Message):
    __slots__ = ("commands", "options")
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[OrderEntryCommand]
    options: SessionOptions
    def __init__(self, commands: _Optional[_Iterable[_Union[OrderEntryCommand, _Mapping]]] = ..., options: _Optional[_Union[SessionOptions, _Mapping]] = ...) -> None: ...

class OrderEntryEvent(_message.Message):
    __slots__ = ("client_order_id", "order", "error", "fills")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    order: Order
    error: _status_pb2.Status
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    def __init__(self, client_order_id: _Optional[str] = ..., order: _Optional[_Union[Order, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ...) -> None: ...

class OrderEntryResponse(_message.Message):
    __slots__ = ("events", "updates", "updates_last_sequence", "notice", "cancelled")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    UPDATES_LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[OrderEntryEvent]
    updates: _containers.RepeatedCompositeFieldContainer[OrderUpdate]
    updates_last_sequence: int
    notice: str
    cancelled: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, events: _Optional[_Iterable[_Union[OrderEntryEvent, _Mapping]]] = ..., updates: _Optional[_Iterable[_Union[OrderUpdate, _Mapping]]] = ..., updates_last_sequence: _Optional[int] = ..., notice: _Optional[str] = ..., cancelled: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...

class CancelAllOrdersRequest(_message.Message):
    __slots__ = ("instrument", "side")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    side: _common_pb2.Side
    def __init__(self, instrument: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ...) -> None: ...

class CancelAllOrdersResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...

class OrderUpdate(_message.Message):
    __slots__ = ("sequence", "kind", "order", "fill", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    kind: OrderUpdateKind
    order: Order
    fill: Fill
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., kind: _Optional[_Union[OrderUpdateKind, str]] = ..., order: _Optional[_Union[Order, _Mapping]] = ..., fill: _Optional[_Union[Fill, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamOrderUpdatesRequest(_message.Message):
    __slots__ = ("after_sequence",)
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    def __init__(self, after_sequence: _Optional[int] = ...) -> None: ...

class StreamOrderUpdatesResponse(_message.Message):
    __slots__ = ("updates", "last_sequence")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[OrderUpdate]
    last_sequence: int
    def __init__(self, updates: _Optional[_Iterable[_Union[OrderUpdate, _Mapping]]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order", "fills")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    order: Order
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("instrument", "status", "page_size", "page_token")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    status: OrderStatusFilter
    page_size: int
    page_token: str
    def __init__(self, instrument: _Optional[str] = ..., status: _Optional[_Union[OrderStatusFilter, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFillsRequest(_message.Message):
    __slots__ = ("instrument", "order_id", "page_size", "page_token")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    order_id: str
    page_size: int
    page_token: str
    def __init__(self, instrument: _Optional[str] = ..., order_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFillsResponse(_message.Message):
    __slots__ = ("fills", "next_page_token")
    FILLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    next_page_token: str
    def __init__(self, fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("asset", "available", "held", "total")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    asset: str
    available: str
    held: str
    total: str
    def __init__(self, asset: _Optional[str] = ..., available: _Optional[str] = ..., held: _Optional[str] = ..., total: _Optional[str] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ("asset",)
    ASSET_FIELD_NUMBER: _ClassVar[int]
    asset: str
    def __init__(self, asset: _Optional[str] = ...) -> None: ...

class GetBalancesResponse(_message.Message):
    __slots__ = ("balances",)
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    def __init__(self, balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("entry_id", "kind", "asset", "available", "held", "order_id", "trade_id", "reference", "time")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    kind: LedgerEntryKind
    asset: str
    available: str
    held: str
    order_id: str
    trade_id: str
    reference: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, entry_id: _Optional[str] = ..., kind: _Optional[_Union[LedgerEntryKind, str]] = ..., asset: _Optional[str] = ..., available: _Optional[str] = ..., held: _Optional[str] = ..., order_id: _Optional[str] = ..., trade_id: _Optional[str] = ..., reference: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListLedgerEntriesRequest(_message.Message):
    __slots__ = ("asset", "page_size", "page_token")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    asset: str
    page_size: int
    page_token: str
    def __init__(self, asset: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLedgerEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
