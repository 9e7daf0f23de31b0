-- Orders for traders (issue 14): self-trade prevention, stop and stop-limit orders,
-- good-till-time (docs/orders.md).
--
-- * ``stop_price``: a stop (market) or stop-limit order's trigger price in ticks, 0
--   for other orders; an untriggered stop has state UNTRIGGERED (7): open, off the book.
-- * ``expire_at``: a good-till-time order's expiry (NULL: none); the owning matching
--   pod expires it (journal kind TIMED_OUT, 10) when its clock reaches it.
-- * ``self_trade_prevention``: the order's mode (exchange.common.v1.SelfTradePrevention,
--   by number as every enum column; an unspecified mode is stored as CANCEL_RESTING).
-- The journal's ACCEPTED and REJECTED events carry the same three, so that a book
-- rebuilt from the journal alone re-executes each order as it was.
ALTER TABLE orders
    ADD COLUMN stop_price bigint NOT NULL DEFAULT 0,
    ADD COLUMN expire_at timestamptz,
    ADD COLUMN self_trade_prevention smallint NOT NULL DEFAULT 0;

ALTER TABLE journal
    ADD COLUMN stop_price bigint NOT NULL DEFAULT 0,
    ADD COLUMN expire_at timestamptz,
    ADD COLUMN self_trade_prevention smallint NOT NULL DEFAULT 0;
