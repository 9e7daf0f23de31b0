from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]

class SelfTradePrevention(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELF_TRADE_PREVENTION_UNSPECIFIED: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_NONE: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_RESTING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_INCOMING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_BOTH: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_DECREMENT: _ClassVar[SelfTradePrevention]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_UNSPECIFIED: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_FOK: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTT: _ClassVar[TimeInForce]

class OrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATE_UNSPECIFIED: _ClassVar[OrderState]
    ORDER_STATE_NEW: _ClassVar[OrderState]
    ORDER_STATE_PARTIALLY_FILLED: _ClassVar[OrderState]
    ORDER_STATE_FILLED: _ClassVar[OrderState]
    ORDER_STATE_CANCELLED: _ClassVar[OrderState]
    ORDER_STATE_EXPIRED: _ClassVar[OrderState]
    ORDER_STATE_REJECTED: _ClassVar[OrderState]
    ORDER_STATE_UNTRIGGERED: _ClassVar[OrderState]

class Liquidity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIQUIDITY_UNSPECIFIED: _ClassVar[Liquidity]
    LIQUIDITY_MAKER: _ClassVar[Liquidity]
    LIQUIDITY_TAKER: _ClassVar[Liquidity]

class InstrumentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTRUMENT_STATUS_UNSPECIFIED: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_TRADING: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_HALTED: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_CANCEL_ONLY: _ClassVar[InstrumentStatus]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_MARKET: OrderType
SELF_TRADE_PREVENTION_UNSPECIFIED: SelfTradePrevention
SELF_TRADE_PREVENTION_NONE: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_RESTING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_INCOMING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_BOTH: SelfTradePrevention
SELF_TRADE_PREVENTION_DECREMENT: SelfTradePrevention
TIME_IN_FORCE_UNSPECIFIED: TimeInForce
TIME_IN_FORCE_GTC: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_FOK: TimeInForce
TIME_IN_FORCE_GTT: TimeInForce
ORDER_STATE_UNSPECIFIED: OrderState
ORDER_STATE_NEW: OrderState
ORDER_STATE_PARTIALLY_FILLED: OrderState
ORDER_STATE_FILLED: OrderState
ORDER_STATE_CANCELLED: OrderState
ORDER_STATE_EXPIRED: OrderState
ORDER_STATE_REJECTED: OrderState
ORDER_STATE_UNTRIGGERED: OrderState
LIQUIDITY_UNSPECIFIED: Liquidity
LIQUIDITY_MAKER: Liquidity
LIQUIDITY_TAKER: Liquidity
INSTRUMENT_STATUS_UNSPECIFIED: InstrumentStatus
INSTRUMENT_STATUS_TRADING: InstrumentStatus
INSTRUMENT_STATUS_HALTED: InstrumentStatus
INSTRUMENT_STATUS_CANCEL_ONLY: InstrumentStatus
