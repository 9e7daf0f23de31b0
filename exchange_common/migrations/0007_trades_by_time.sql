-- Candles and the ticker's 24-hour window read an instrument's trades by time
-- (marketdata_service/store.py): one index instead of a scan of all its trades.
CREATE INDEX trades_instrument_time ON trades (instrument_id, created_at);
