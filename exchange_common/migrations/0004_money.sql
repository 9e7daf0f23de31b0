-- Money: assets, balances, pre-trade holds, settlement and fees (docs/money.md).
-- Every amount is a bigint in the asset's smallest unit (10^-decimals).

CREATE TABLE assets (
    asset_id          smallint PRIMARY KEY,
    symbol            text NOT NULL UNIQUE,
    decimals          smallint NOT NULL CHECK (decimals BETWEEN 0 AND 18),
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- The assets the instruments name today: BTC, ETH 8 places, USD 6; any other gets
-- the places its instruments need (a lot a whole number of base units, a tick times a
-- lot a whole number of quote units), at least 8 as a base and 2 as a quote.
INSERT INTO assets (asset_id, symbol, decimals)
SELECT row_number() OVER (ORDER BY symbol), symbol, decimals FROM (
    SELECT symbol, max(need) AS decimals FROM (
        SELECT base_asset AS symbol,
               CASE base_asset WHEN 'BTC' THEN 8 WHEN 'ETH' THEN 8
                    ELSE greatest(8, scale(lot_size)) END AS need
          FROM instruments
        UNION ALL
        SELECT quote_asset,
               CASE quote_asset WHEN 'USD' THEN greatest(6, scale(tick_size) + scale(lot_size))
                    ELSE greatest(2, scale(tick_size) + scale(lot_size)) END
          FROM instruments
    ) needs GROUP BY symbol
) a;

-- Fees in basis points of the notional, per instrument (10 each: 0.1%), and per account
-- below. A negative maker fee is a rebate; a taker fee is never negative, and a rebate
-- never exceeds the taker fee.
ALTER TABLE instruments
    ADD COLUMN maker_fee_bps integer NOT NULL DEFAULT 10,
    ADD COLUMN taker_fee_bps integer NOT NULL DEFAULT 10,
    ADD CONSTRAINT instruments_fees_check
        CHECK (taker_fee_bps BETWEEN 0 AND 10000 AND maker_fee_bps BETWEEN -taker_fee_bps AND 10000);

CREATE TABLE account_fees (
    account_id        bigint NOT NULL REFERENCES accounts,
    instrument_id     integer NOT NULL REFERENCES instruments,
    maker_fee_bps     integer NOT NULL,
    taker_fee_bps     integer NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, instrument_id),
    CHECK (taker_fee_bps BETWEEN 0 AND 10000 AND maker_fee_bps BETWEEN -taker_fee_bps AND 10000)
);
CREATE TRIGGER account_fees_changed AFTER INSERT OR UPDATE OR DELETE ON account_fees
    FOR EACH STATEMENT EXECUTE FUNCTION exchange_notify_change();

-- The money of each account, per asset. The CHECKs are the last guard: a statement that
-- would make one negative fails whole.
CREATE TABLE balances (
    account_id        bigint NOT NULL,
    asset_id          smallint NOT NULL,
    available         bigint NOT NULL DEFAULT 0 CHECK (available >= 0),
    held              bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (account_id, asset_id)
);

-- A hold taken in the order path for a command matching has not committed yet (a new
-- order: key = its client_order_id; an amendment: key = "amend:<order id>:<nonce>").
-- The commit that places the order (or applies the amendment) deletes it; the order
-- service deletes it, crediting it back, when matching refused the command; the sweeper
-- when it is older than the hold TTL and no order took it.
CREATE TABLE order_holds (
    account_id        bigint NOT NULL,
    hold_key          text NOT NULL,
    asset_id          smallint NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    -- a market buy's protection price the amount was computed at (0: none)
    protection        bigint NOT NULL DEFAULT 0,
    held_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, hold_key)
);
CREATE INDEX order_holds_held_at ON order_holds (held_at);

-- Stored ledger entries: money in and out (deposit, withdrawal, adjustment, each with an
-- idempotency key), and the holds that never became orders (hold, release). Trades,
-- fees, and the holds and releases of orders are derived from trades and orders.
CREATE TABLE ledger (
    entry_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id        bigint NOT NULL,
    asset_id          smallint NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'adjustment',
                                                    'hold', 'release')),
    available         bigint NOT NULL,
    held              bigint NOT NULL DEFAULT 0,
    idempotency_key   text UNIQUE,
    reference         text NOT NULL DEFAULT '',
    actor             text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_account ON ledger (account_id, entry_id DESC);

-- What an order holds, and the terms it holds on: ``held`` now; ``hold_price`` the price
-- its hold per lot was computed at (a limit buy's price, a market buy's protection
-- price; 0 for sells and for buys with a budget); ``funds`` a market buy's budget;
-- ``maker_fee_bps``/``taker_fee_bps`` its fees; ``hold_placed`` what it held when placed.
ALTER TABLE orders
    ADD COLUMN held bigint NOT NULL DEFAULT 0,
    ADD COLUMN hold_placed bigint NOT NULL DEFAULT 0,
    ADD COLUMN hold_price bigint NOT NULL DEFAULT 0,
    ADD COLUMN funds bigint NOT NULL DEFAULT 0,
    ADD COLUMN maker_fee_bps integer NOT NULL DEFAULT 0,
    ADD COLUMN taker_fee_bps integer NOT NULL DEFAULT 0;

-- An accepted (or rejected) order's event carries its hold and terms, an amendment's
-- the extra hold it brought, so that a book rebuilt from the journal knows its money.
ALTER TABLE journal
    ADD COLUMN held bigint NOT NULL DEFAULT 0,
    ADD COLUMN hold_price bigint NOT NULL DEFAULT 0,
    ADD COLUMN funds bigint NOT NULL DEFAULT 0,
    ADD COLUMN maker_fee_bps integer NOT NULL DEFAULT 0,
    ADD COLUMN taker_fee_bps integer NOT NULL DEFAULT 0;

-- What each side paid (quote units; negative: a rebate), and what the buyer's hold gave
-- back to available on this fill (the price improvement and the unused fee reserve).
ALTER TABLE trades
    ADD COLUMN maker_fee bigint NOT NULL DEFAULT 0,
    ADD COLUMN taker_fee bigint NOT NULL DEFAULT 0,
    ADD COLUMN buyer_released bigint NOT NULL DEFAULT 0;

-- The price a market buy's protection is computed from: the last trade's, or before the
-- first trade the best ask (then the best bid) at the latest commit.
ALTER TABLE instrument_state ADD COLUMN reference_price bigint;

-- The fee account: an ordinary account, which trading fees are paid to.
INSERT INTO accounts (name) VALUES ('exchange-fees') ON CONFLICT (name) DO NOTHING;

-- An account's amendments that brought an extra hold (its ledger lists them).
CREATE INDEX journal_amend_holds ON journal (account_id) WHERE kind = 6 AND held > 0;
