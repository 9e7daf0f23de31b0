"""The ticker's 24-hour window: whole minutes, the current one included."""

from __future__ import annotations

from marketdata_service.ticker import MINUTE_NANOS, WINDOW_MINUTES, TickerWindow

M = MINUTE_NANOS


def test_window_edges() -> None:
    window = TickerWindow()
    window.add(1, 100, 2, 10 * M + 5)  # minute 10
    window.add(2, 120, 1, 10 * M + 6)
    window.add(3, 90, 3, 11 * M)  # minute 11, on its first nanosecond
    now = 11 * M + 30
    stats = window.stats(now)
    assert stats is not None
    assert (stats.open, stats.high, stats.low, stats.volume, stats.trade_count) == (
        100, 120, 90, 6, 3)
    assert stats.quote_volume == 100 * 2 + 120 + 90 * 3
    # Minute 10 is in the window up to the end of minute 10 + 1440.
    assert window.stats((10 + WINDOW_MINUTES) * M + M - 1).trade_count == 3  # type: ignore[union-attr]
    later = window.stats((11 + WINDOW_MINUTES) * M)
    assert later is not None and (later.open, later.trade_count) == (90, 1)
    assert window.stats((12 + WINDOW_MINUTES) * M) is None


def test_repeats_are_ignored_and_out_of_order_times_go_to_their_minute() -> None:
    window = TickerWindow()
    window.add(5, 100, 1, 20 * M)
    window.add(5, 100, 1, 20 * M)  # the same trade again
    window.add(6, 110, 1, 21 * M)
    window.add(7, 105, 1, 20 * M + 1)  # stamped earlier by another owner's clock
    assert len(window) == 2
    stats = window.stats(21 * M)
    assert stats is not None and (stats.trade_count, stats.open, stats.high) == (3, 100, 110)
    assert window.stats((20 + WINDOW_MINUTES + 1) * M).trade_count == 1  # type: ignore[union-attr]


def test_loaded_buckets_equal_live_ones() -> None:
    live = TickerWindow()
    trades = [(s, 100 + s % 7, 1 + s % 3, s * 17 * 1_000_000_000) for s in range(1, 200)]
    for t in trades:
        live.add(*t)
    loaded = TickerWindow(live._buckets)
    now = 200 * 17 * 1_000_000_000
    assert loaded.stats(now) == live.stats(now)
