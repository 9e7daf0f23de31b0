import datetime

from exchange.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstrumentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTRUMENT_STATUS_UNSPECIFIED: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_TRADING: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_HALTED: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_CANCEL_ONLY: _ClassVar[InstrumentStatus]
INSTRUMENT_STATUS_UNSPECIFIED: InstrumentStatus
INSTRUMENT_STATUS_TRADING: InstrumentStatus
INSTRUMENT_STATUS_HALTED: InstrumentStatus
INSTRUMENT_STATUS_CANCEL_ONLY: InstrumentStatus

class Instrument(_message.Message):
    __slots__ = ("symbol", "base_asset", "quote_asset", "tick_size", "lot_size", "min_quantity", "max_quantity", "min_notional", "price_decimals", "quantity_decimals", "status", "price_band_bps")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BASE_ASSET_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MIN_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    PRICE_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRICE_BAND_BPS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: str
    lot_size: str
    min_quantity: str
    max_quantity: str
    min_notional: str
    price_decimals: int
    quantity_decimals: int
    status: InstrumentStatus
    price_band_bps: int
    def __init__(self, symbol: _Optional[str] = ..., base_asset: _Optional[str] = ..., quote_asset: _Optional[str] = ..., tick_size: _Optional[str] = ..., lot_size: _Optional[str] = ..., min_quantity: _Optional[str] = ..., max_quantity: _Optional[str] = ..., min_notional: _Optional[str] = ..., price_decimals: _Optional[int] = ..., quantity_decimals: _Optional[int] = ..., status: _Optional[_Union[InstrumentStatus, str]] = ..., price_band_bps: _Optional[int] = ...) -> None: ...

class ListInstrumentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[Instrument]
    def __init__(self, instruments: _Optional[_Iterable[_Union[Instrument, _Mapping]]] = ...) -> None: ...

class PriceLevel(_message.Message):
    __slots__ = ("price", "quantity", "order_count")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    price: str
    quantity: str
    order_count: int
    def __init__(self, price: _Optional[str] = ..., quantity: _Optional[str] = ..., order_count: _Optional[int] = ...) -> None: ...

class GetOrderBookRequest(_message.Message):
    __slots__ = ("instrument", "depth")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    depth: int
    def __init__(self, instrument: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class GetOrderBookResponse(_message.Message):
    __slots__ = ("instrument", "sequence", "bids", "asks", "time")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    time: _timestamp_pb2.Timestamp
    def __init__(self, instrument: _Optional[str] = ..., sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamOrderBookRequest(_message.Message):
    __slots__ = ("instrument",)
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    def __init__(self, instrument: _Optional[str] = ...) -> None: ...

class OrderBookSnapshot(_message.Message):
    __slots__ = ("sequence", "bids", "asks", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OrderBookDelta(_message.Message):
    __slots__ = ("first_sequence", "sequence", "bids", "asks", "time")
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    first_sequence: int
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    time: _timestamp_pb2.Timestamp
    def __init__(self, first_sequence: _Optional[int] = ..., sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamOrderBookResponse(_message.Message):
    __slots__ = ("instrument", "snapshot", "delta")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    snapshot: OrderBookSnapshot
    delta: OrderBookDelta
    def __init__(self, instrument: _Optional[str] = ..., snapshot: _Optional[_Union[OrderBookSnapshot, _Mapping]] = ..., delta: _Optional[_Union[OrderBookDelta, _Mapping]] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("trade_id", "instrument", "price", "quantity", "taker_side", "time", "sequence")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TAKER_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    trade_id: str
    instrument: str
    price: str
    quantity: str
    taker_side: _common_pb2.Side
    time: _timestamp_pb2.Timestamp
    sequence: int
    def __init__(self, trade_id: _Optional[str] = ..., instrument: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., taker_side: _Optional[_Union[_common_pb2.Side, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class ListTradesRequest(_message.Message):
    __slots__ = ("instrument", "page_size", "page_token")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    page_size: int
    page_token: str
    def __init__(self, instrument: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTradesResponse(_message.Message):
    __slots__ = ("trades", "next_page_token")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    next_page_token: str
    def __init__(self, trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamTradesRequest(_message.Message):
    __slots__ = ("instrument",)
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    def __init__(self, instrument: _Optional[str] = ...) -> None: ...

class StreamTradesResponse(_message.Message):
    __slots__ = ("trades",)
    TRADES_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    def __init__(self, trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ...) -> None: ...
