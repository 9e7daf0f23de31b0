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

class CandleInterval(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANDLE_INTERVAL_UNSPECIFIED: _ClassVar[CandleInterval]
    CANDLE_INTERVAL_ONE_MINUTE: _ClassVar[CandleInterval]
    CANDLE_INTERVAL_FIVE_MINUTES: _ClassVar[CandleInterval]
    CANDLE_INTERVAL_FIFTEEN_MINUTES: _ClassVar[CandleInterval]
    CANDLE_INTERVAL_ONE_HOUR: _ClassVar[CandleInterval]
    CANDLE_INTERVAL_ONE_DAY: _ClassVar[CandleInterval]

class L3ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    L3_CHANGE_KIND_UNSPECIFIED: _ClassVar[L3ChangeKind]
    L3_CHANGE_KIND_ADD: _ClassVar[L3ChangeKind]
    L3_CHANGE_KIND_CHANGE: _ClassVar[L3ChangeKind]
    L3_CHANGE_KIND_REMOVE: _ClassVar[L3ChangeKind]
INSTRUMENT_STATUS_UNSPECIFIED: InstrumentStatus
INSTRUMENT_STATUS_TRADING: InstrumentStatus
INSTRUMENT_STATUS_HALTED: InstrumentStatus
INSTRUMENT_STATUS_CANCEL_ONLY: InstrumentStatus
CANDLE_INTERVAL_UNSPECIFIED: CandleInterval
CANDLE_INTERVAL_ONE_MINUTE: CandleInterval
CANDLE_INTERVAL_FIVE_MINUTES: CandleInterval
CANDLE_INTERVAL_FIFTEEN_MINUTES: CandleInterval
CANDLE_INTERVAL_ONE_HOUR: CandleInterval
CANDLE_INTERVAL_ONE_DAY: CandleInterval
L3_CHANGE_KIND_UNSPECIFIED: L3ChangeKind
L3_CHANGE_KIND_ADD: L3ChangeKind
L3_CHANGE_KIND_CHANGE: L3ChangeKind
L3_CHANGE_KIND_REMOVE: L3ChangeKind

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
    __slots__ = ("instrument", "depth", "interval_ms")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    depth: int
    interval_ms: int
    def __init__(self, instrument: _Optional[str] = ..., depth: _Optional[int] = ..., interval_ms: _Optional[int] = ...) -> None: ...

class OrderBookSnapshot(_message.Message):
    __slots__ = ("sequence", "bids", "asks", "time", "checksum")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    time: _timestamp_pb2.Timestamp
    checksum: int
    def __init__(self, sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., checksum: _Optional[int] = ...) -> None: ...

class OrderBookDelta(_message.Message):
    __slots__ = ("first_sequence", "sequence", "bids", "asks", "time", "checksum")
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    first_sequence: int
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    time: _timestamp_pb2.Timestamp
    checksum: int
    def __init__(self, first_sequence: _Optional[int] = ..., sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., checksum: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sequence", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamOrderBookResponse(_message.Message):
    __slots__ = ("instrument", "snapshot", "delta", "heartbeat")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    snapshot: OrderBookSnapshot
    delta: OrderBookDelta
    heartbeat: Heartbeat
    def __init__(self, instrument: _Optional[str] = ..., snapshot: _Optional[_Union[OrderBookSnapshot, _Mapping]] = ..., delta: _Optional[_Union[OrderBookDelta, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

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

class Ticker(_message.Message):
    __slots__ = ("instrument", "last_price", "last_quantity", "last_trade_time", "best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity", "open_24h", "high_24h", "low_24h", "volume_24h", "quote_volume_24h", "trade_count_24h", "sequence", "time")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    LAST_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LAST_TRADE_TIME_FIELD_NUMBER: _ClassVar[int]
    BEST_BID_FIELD_NUMBER: _ClassVar[int]
    BEST_BID_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BEST_ASK_FIELD_NUMBER: _ClassVar[int]
    BEST_ASK_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    OPEN_24H_FIELD_NUMBER: _ClassVar[int]
    HIGH_24H_FIELD_NUMBER: _ClassVar[int]
    LOW_24H_FIELD_NUMBER: _ClassVar[int]
    VOLUME_24H_FIELD_NUMBER: _ClassVar[int]
    QUOTE_VOLUME_24H_FIELD_NUMBER: _ClassVar[int]
    TRADE_COUNT_24H_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    last_price: str
    last_quantity: str
    last_trade_time: _timestamp_pb2.Timestamp
    best_bid: str
    best_bid_quantity: str
    best_ask: str
    best_ask_quantity: str
    open_24h: str
    high_24h: str
    low_24h: str
    volume_24h: str
    quote_volume_24h: str
    trade_count_24h: int
    sequence: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, instrument: _Optional[str] = ..., last_price: _Optional[str] = ..., last_quantity: _Optional[str] = ..., last_trade_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., best_bid: _Optional[str] = ..., best_bid_quantity: _Optional[str] = ..., best_ask: _Optional[str] = ..., best_ask_quantity: _Optional[str] = ..., open_24h: _Optional[str] = ..., high_24h: _Optional[str] = ..., low_24h: _Optional[str] = ..., volume_24h: _Optional[str] = ..., quote_volume_24h: _Optional[str] = ..., trade_count_24h: _Optional[int] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTickerRequest(_message.Message):
    __slots__ = ("instrument",)
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    def __init__(self, instrument: _Optional[str] = ...) -> None: ...

class GetTickerResponse(_message.Message):
    __slots__ = ("ticker",)
    TICKER_FIELD_NUMBER: _ClassVar[int]
    ticker: Ticker
    def __init__(self, ticker: _Optional[_Union[Ticker, _Mapping]] = ...) -> None: ...

class StreamTickerRequest(_message.Message):
    __slots__ = ("instrument", "interval_ms")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    interval_ms: int
    def __init__(self, instrument: _Optional[str] = ..., interval_ms: _Optional[int] = ...) -> None: ...

class StreamTickerResponse(_message.Message):
    __slots__ = ("ticker",)
    TICKER_FIELD_NUMBER: _ClassVar[int]
    ticker: Ticker
    def __init__(self, ticker: _Optional[_Union[Ticker, _Mapping]] = ...) -> None: ...

class Candle(_message.Message):
    __slots__ = ("start_time", "open", "high", "low", "close", "volume", "quote_volume", "trade_count")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    QUOTE_VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADE_COUNT_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trade_count: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., volume: _Optional[str] = ..., quote_volume: _Optional[str] = ..., trade_count: _Optional[int] = ...) -> None: ...

class ListCandlesRequest(_message.Message):
    __slots__ = ("instrument", "interval", "start_time", "end_time", "page_size", "page_token")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    interval: CandleInterval
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, instrument: _Optional[str] = ..., interval: _Optional[_Union[CandleInterval, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCandlesResponse(_message.Message):
    __slots__ = ("candles", "next_page_token")
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    candles: _containers.RepeatedCompositeFieldContainer[Candle]
    next_page_token: str
    def __init__(self, candles: _Optional[_Iterable[_Union[Candle, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamOrderBookL3Request(_message.Message):
    __slots__ = ("instrument",)
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    def __init__(self, instrument: _Optional[str] = ...) -> None: ...

class L3Order(_message.Message):
    __slots__ = ("order_id", "side", "price", "quantity", "priority")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    side: _common_pb2.Side
    price: str
    quantity: str
    priority: int
    def __init__(self, order_id: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., priority: _Optional[int] = ...) -> None: ...

class L3Change(_message.Message):
    __slots__ = ("kind", "order")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    kind: L3ChangeKind
    order: L3Order
    def __init__(self, kind: _Optional[_Union[L3ChangeKind, str]] = ..., order: _Optional[_Union[L3Order, _Mapping]] = ...) -> None: ...

class OrderBookL3Snapshot(_message.Message):
    __slots__ = ("sequence", "bids", "asks", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[L3Order]
    asks: _containers.RepeatedCompositeFieldContainer[L3Order]
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[L3Order, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[L3Order, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OrderBookL3Delta(_message.Message):
    __slots__ = ("first_sequence", "sequence", "changes", "time")
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    first_sequence: int
    sequence: int
    changes: _containers.RepeatedCompositeFieldContainer[L3Change]
    time: _timestamp_pb2.Timestamp
    def __init__(self, first_sequence: _Optional[int] = ..., sequence: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[L3Change, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamOrderBookL3Response(_message.Message):
    __slots__ = ("instrument", "snapshot", "delta", "heartbeat")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    snapshot: OrderBookL3Snapshot
    delta: OrderBookL3Delta
    heartbeat: Heartbeat
    def __init__(self, instrument: _Optional[str] = ..., snapshot: _Optional[_Union[OrderBookL3Snapshot, _Mapping]] = ..., delta: _Optional[_Union[OrderBookL3Delta, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...
