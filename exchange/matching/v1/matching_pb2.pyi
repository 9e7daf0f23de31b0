from exchange.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_OWNER: _ClassVar[ErrorCode]
    ERROR_CODE_ORDER_NOT_OPEN: _ClassVar[ErrorCode]
    ERROR_CODE_DUPLICATE_CLIENT_ORDER_ID: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID: _ClassVar[ErrorCode]
    ERROR_CODE_HALTED: _ClassVar[ErrorCode]
    ERROR_CODE_POST_ONLY_WOULD_TAKE: _ClassVar[ErrorCode]
    ERROR_CODE_CANCEL_ONLY: _ClassVar[ErrorCode]
    ERROR_CODE_PRICE_OUTSIDE_BAND: _ClassVar[ErrorCode]
    ERROR_CODE_OPEN_ORDER_LIMIT: _ClassVar[ErrorCode]
    ERROR_CODE_INSUFFICIENT_FUNDS: _ClassVar[ErrorCode]
    ERROR_CODE_HOLD_EXPIRED: _ClassVar[ErrorCode]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_NOT_OWNER: ErrorCode
ERROR_CODE_ORDER_NOT_OPEN: ErrorCode
ERROR_CODE_DUPLICATE_CLIENT_ORDER_ID: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_INVALID: ErrorCode
ERROR_CODE_HALTED: ErrorCode
ERROR_CODE_POST_ONLY_WOULD_TAKE: ErrorCode
ERROR_CODE_CANCEL_ONLY: ErrorCode
ERROR_CODE_PRICE_OUTSIDE_BAND: ErrorCode
ERROR_CODE_OPEN_ORDER_LIMIT: ErrorCode
ERROR_CODE_INSUFFICIENT_FUNDS: ErrorCode
ERROR_CODE_HOLD_EXPIRED: ErrorCode

class GetBookRequest(_message.Message):
    __slots__ = ("instrument_id",)
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    def __init__(self, instrument_id: _Optional[int] = ...) -> None: ...

class BookOrder(_message.Message):
    __slots__ = ("order_id", "account_id", "client_order_id", "side", "type", "time_in_force", "post_only", "price", "quantity", "filled", "filled_notional", "state", "priority", "last_sequence", "create_time_unix_nanos", "update_time_unix_nanos", "held", "hold_placed", "hold_price", "funds", "maker_fee_bps", "taker_fee_bps", "stop_price", "expire_time_unix_nanos", "self_trade_prevention")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FILLED_FIELD_NUMBER: _ClassVar[int]
    FILLED_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    HOLD_PLACED_FIELD_NUMBER: _ClassVar[int]
    HOLD_PRICE_FIELD_NUMBER: _ClassVar[int]
    FUNDS_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    account_id: int
    client_order_id: str
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    post_only: bool
    price: int
    quantity: int
    filled: int
    filled_notional: str
    state: _common_pb2.OrderState
    priority: int
    last_sequence: int
    create_time_unix_nanos: int
    update_time_unix_nanos: int
    held: int
    hold_placed: int
    hold_price: int
    funds: int
    maker_fee_bps: int
    taker_fee_bps: int
    stop_price: int
    expire_time_unix_nanos: int
    self_trade_prevention: _common_pb2.SelfTradePrevention
    def __init__(self, order_id: _Optional[int] = ..., account_id: _Optional[int] = ..., client_order_id: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., post_only: _Optional[bool] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., filled: _Optional[int] = ..., filled_notional: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.OrderState, str]] = ..., priority: _Optional[int] = ..., last_sequence: _Optional[int] = ..., create_time_unix_nanos: _Optional[int] = ..., update_time_unix_nanos: _Optional[int] = ..., held: _Optional[int] = ..., hold_placed: _Optional[int] = ..., hold_price: _Optional[int] = ..., funds: _Optional[int] = ..., maker_fee_bps: _Optional[int] = ..., taker_fee_bps: _Optional[int] = ..., stop_price: _Optional[int] = ..., expire_time_unix_nanos: _Optional[int] = ..., self_trade_prevention: _Optional[_Union[_common_pb2.SelfTradePrevention, str]] = ...) -> None: ...

class GetBookResponse(_message.Message):
    __slots__ = ("instrument_id", "sequence", "owner_epoch", "bids", "asks", "status", "stops")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OWNER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STOPS_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    sequence: int
    owner_epoch: int
    bids: _containers.RepeatedCompositeFieldContainer[BookOrder]
    asks: _containers.RepeatedCompositeFieldContainer[BookOrder]
    status: _common_pb2.InstrumentStatus
    stops: _containers.RepeatedCompositeFieldContainer[BookOrder]
    def __init__(self, instrument_id: _Optional[int] = ..., sequence: _Optional[int] = ..., owner_epoch: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[BookOrder, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[BookOrder, _Mapping]]] = ..., status: _Optional[_Union[_common_pb2.InstrumentStatus, str]] = ..., stops: _Optional[_Iterable[_Union[BookOrder, _Mapping]]] = ...) -> None: ...

class BookSnapshot(_message.Message):
    __slots__ = ("instrument_id", "sequence", "orders", "status")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    sequence: int
    orders: _containers.RepeatedCompositeFieldContainer[BookOrder]
    status: _common_pb2.InstrumentStatus
    def __init__(self, instrument_id: _Optional[int] = ..., sequence: _Optional[int] = ..., orders: _Optional[_Iterable[_Union[BookOrder, _Mapping]]] = ..., status: _Optional[_Union[_common_pb2.InstrumentStatus, str]] = ...) -> None: ...

class NewOrder(_message.Message):
    __slots__ = ("instrument_id", "account_id", "side", "type", "time_in_force", "price", "quantity", "client_order_id", "post_only", "max_open_orders", "held", "held_at_unix_nanos", "protection_price", "funds", "maker_fee_bps", "taker_fee_bps", "self_trade_prevention", "stop_price", "expire_time_unix_nanos")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    HELD_AT_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_PRICE_FIELD_NUMBER: _ClassVar[int]
    FUNDS_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    account_id: int
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    price: int
    quantity: int
    client_order_id: str
    post_only: bool
    max_open_orders: int
    held: int
    held_at_unix_nanos: int
    protection_price: int
    funds: int
    maker_fee_bps: int
    taker_fee_bps: int
    self_trade_prevention: _common_pb2.SelfTradePrevention
    stop_price: int
    expire_time_unix_nanos: int
    def __init__(self, instrument_id: _Optional[int] = ..., account_id: _Optional[int] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., client_order_id: _Optional[str] = ..., post_only: _Optional[bool] = ..., max_open_orders: _Optional[int] = ..., held: _Optional[int] = ..., held_at_unix_nanos: _Optional[int] = ..., protection_price: _Optional[int] = ..., funds: _Optional[int] = ..., maker_fee_bps: _Optional[int] = ..., taker_fee_bps: _Optional[int] = ..., self_trade_prevention: _Optional[_Union[_common_pb2.SelfTradePrevention, str]] = ..., stop_price: _Optional[int] = ..., expire_time_unix_nanos: _Optional[int] = ...) -> None: ...

class CancelOrder(_message.Message):
    __slots__ = ("instrument_id", "account_id", "order_id")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    account_id: int
    order_id: int
    def __init__(self, instrument_id: _Optional[int] = ..., account_id: _Optional[int] = ..., order_id: _Optional[int] = ...) -> None: ...

class AmendOrder(_message.Message):
    __slots__ = ("instrument_id", "account_id", "order_id", "price", "quantity", "extra_held", "hold_key", "held_at_unix_nanos")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HELD_FIELD_NUMBER: _ClassVar[int]
    HOLD_KEY_FIELD_NUMBER: _ClassVar[int]
    HELD_AT_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    account_id: int
    order_id: int
    price: int
    quantity: int
    extra_held: int
    hold_key: str
    held_at_unix_nanos: int
    def __init__(self, instrument_id: _Optional[int] = ..., account_id: _Optional[int] = ..., order_id: _Optional[int] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., extra_held: _Optional[int] = ..., hold_key: _Optional[str] = ..., held_at_unix_nanos: _Optional[int] = ...) -> None: ...

class CancelAll(_message.Message):
    __slots__ = ("instrument_id", "account_id", "side")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    account_id: int
    side: _common_pb2.Side
    def __init__(self, instrument_id: _Optional[int] = ..., account_id: _Optional[int] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("request_id", "new_order", "cancel_order", "amend_order", "cancel_all", "traceparent")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_ORDER_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ORDER_FIELD_NUMBER: _ClassVar[int]
    AMEND_ORDER_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ALL_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    new_order: NewOrder
    cancel_order: CancelOrder
    amend_order: AmendOrder
    cancel_all: CancelAll
    traceparent: str
    def __init__(self, request_id: _Optional[int] = ..., new_order: _Optional[_Union[NewOrder, _Mapping]] = ..., cancel_order: _Optional[_Union[CancelOrder, _Mapping]] = ..., amend_order: _Optional[_Union[AmendOrder, _Mapping]] = ..., cancel_all: _Optional[_Union[CancelAll, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class FillReport(_message.Message):
    __slots__ = ("trade_id", "price", "quantity", "liquidity", "time_unix_nanos", "fee")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    price: int
    quantity: int
    liquidity: _common_pb2.Liquidity
    time_unix_nanos: int
    fee: int
    def __init__(self, trade_id: _Optional[int] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., liquidity: _Optional[_Union[_common_pb2.Liquidity, str]] = ..., time_unix_nanos: _Optional[int] = ..., fee: _Optional[int] = ...) -> None: ...

class OrderReport(_message.Message):
    __slots__ = ("order_id", "state", "quantity", "filled", "filled_notional", "reason", "create_time_unix_nanos", "update_time_unix_nanos", "fills", "duplicate", "side", "type", "time_in_force", "price", "client_order_id", "post_only", "held", "funds", "stop_price", "expire_time_unix_nanos", "self_trade_prevention")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FILLED_FIELD_NUMBER: _ClassVar[int]
    FILLED_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    FUNDS_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    state: _common_pb2.OrderState
    quantity: int
    filled: int
    filled_notional: str
    reason: str
    create_time_unix_nanos: int
    update_time_unix_nanos: int
    fills: _containers.RepeatedCompositeFieldContainer[FillReport]
    duplicate: bool
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    price: int
    client_order_id: str
    post_only: bool
    held: int
    funds: int
    stop_price: int
    expire_time_unix_nanos: int
    self_trade_prevention: _common_pb2.SelfTradePrevention
    def __init__(self, order_id: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.OrderState, str]] = ..., quantity: _Optional[int] = ..., filled: _Optional[int] = ..., filled_notional: _Optional[str] = ..., reason: _Optional[str] = ..., create_time_unix_nanos: _Optional[int] = ..., update_time_unix_nanos: _Optional[int] = ..., fills: _Optional[_Iterable[_Union[FillReport, _Mapping]]] = ..., duplicate: _Optional[bool] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., price: _Optional[int] = ..., client_order_id: _Optional[str] = ..., post_only: _Optional[bool] = ..., held: _Optional[int] = ..., funds: _Optional[int] = ..., stop_price: _Optional[int] = ..., expire_time_unix_nanos: _Optional[int] = ..., self_trade_prevention: _Optional[_Union[_common_pb2.SelfTradePrevention, str]] = ...) -> None: ...

class CancelledOrders(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[OrderReport]
    def __init__(self, orders: _Optional[_Iterable[_Union[OrderReport, _Mapping]]] = ...) -> None: ...

class CommandError(_message.Message):
    __slots__ = ("code", "message", "order_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    order_id: int
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., order_id: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("request_id", "order", "error", "cancelled")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    order: OrderReport
    error: CommandError
    cancelled: CancelledOrders
    def __init__(self, request_id: _Optional[int] = ..., order: _Optional[_Union[OrderReport, _Mapping]] = ..., error: _Optional[_Union[CommandError, _Mapping]] = ..., cancelled: _Optional[_Union[CancelledOrders, _Mapping]] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ...) -> None: ...

class LevelUpdate(_message.Message):
    __slots__ = ("price", "quantity", "order_count")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    price: int
    quantity: int
    order_count: int
    def __init__(self, price: _Optional[int] = ..., quantity: _Optional[int] = ..., order_count: _Optional[int] = ...) -> None: ...

class TradeEvent(_message.Message):
    __slots__ = ("trade_id", "price", "quantity", "taker_side", "time_unix_nanos", "sequence")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TAKER_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    price: int
    quantity: int
    taker_side: _common_pb2.Side
    time_unix_nanos: int
    sequence: int
    def __init__(self, trade_id: _Optional[int] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., taker_side: _Optional[_Union[_common_pb2.Side, str]] = ..., time_unix_nanos: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class MarketDataBatch(_message.Message):
    __slots__ = ("instrument_id", "first_sequence", "last_sequence", "time_unix_nanos", "bids", "asks", "trades", "traceparent", "orders")
    INSTRUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    instrument_id: int
    first_sequence: int
    last_sequence: int
    time_unix_nanos: int
    bids: _containers.RepeatedCompositeFieldContainer[LevelUpdate]
    asks: _containers.RepeatedCompositeFieldContainer[LevelUpdate]
    trades: _containers.RepeatedCompositeFieldContainer[TradeEvent]
    traceparent: str
    orders: _containers.RepeatedCompositeFieldContainer[OrderChange]
    def __init__(self, instrument_id: _Optional[int] = ..., first_sequence: _Optional[int] = ..., last_sequence: _Optional[int] = ..., time_unix_nanos: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[LevelUpdate, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[LevelUpdate, _Mapping]]] = ..., trades: _Optional[_Iterable[_Union[TradeEvent, _Mapping]]] = ..., traceparent: _Optional[str] = ..., orders: _Optional[_Iterable[_Union[OrderChange, _Mapping]]] = ...) -> None: ...

class OrderChange(_message.Message):
    __slots__ = ("order_id", "side", "price", "quantity", "priority")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    side: _common_pb2.Side
    price: int
    quantity: int
    priority: int
    def __init__(self, order_id: _Optional[int] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price: _Optional[int] = ..., quantity: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...
