-- Initial schema. Never edit an applied migration: add a new numbered file.

CREATE TABLE instruments (
    instrument_id     integer PRIMARY KEY CHECK (instrument_id > 0 AND instrument_id < 524288),
    symbol            text NOT NULL UNIQUE,
    base_asset        text NOT NULL,
    quote_asset       text NOT NULL,
    tick_size         numeric NOT NULL CHECK (tick_size > 0),
    lot_size          numeric NOT NULL CHECK (lot_size > 0),
    min_quantity      numeric NOT NULL,
    max_quantity      numeric NOT NULL,
    min_notional      numeric NOT NULL DEFAULT 0,
    -- Limit prices must lie within this many basis points of the last trade
    -- price (0 = no band).
    price_band_bps    integer NOT NULL DEFAULT 0,
    status            text NOT NULL DEFAULT 'trading' CHECK (status IN ('trading', 'halted')),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    account_id        bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each key is stored.
CREATE TABLE api_keys (
    key_sha256        bytea PRIMARY KEY,
    account_id        bigint NOT NULL REFERENCES accounts,
    label             text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);

-- Per instrument: the last journal sequence committed, and who owns it.
-- Every journal write of a matching pod is fenced by owner_epoch.
CREATE TABLE instrument_state (
    instrument_id     integer PRIMARY KEY REFERENCES instruments,
    last_sequence     bigint NOT NULL DEFAULT 0,
    owner_address     text,
    owner_epoch       bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Current state of every order. Enum columns hold the proto enum numbers
-- (exchange.common.v1). Prices in ticks, quantities in lots.
CREATE TABLE orders (
    order_id          bigint PRIMARY KEY,
    instrument_id     integer NOT NULL REFERENCES instruments,
    account_id        bigint NOT NULL REFERENCES accounts,
    client_order_id   text NOT NULL DEFAULT '',
    side              smallint NOT NULL,
    order_type        smallint NOT NULL,
    time_in_force     smallint NOT NULL,
    post_only         boolean NOT NULL DEFAULT false,
    price             bigint NOT NULL,            -- 0 for market orders
    quantity          bigint NOT NULL,
    filled            bigint NOT NULL DEFAULT 0,
    filled_notional   numeric NOT NULL DEFAULT 0, -- sum of price * quantity of the fills
    state             smallint NOT NULL,
    reason            text NOT NULL DEFAULT '',
    -- Time priority on the book: the sequence at which the order (last)
    -- joined its price level.
    priority          bigint NOT NULL,
    last_sequence     bigint NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
-- client_order_id is unique per account (across instruments).
CREATE UNIQUE INDEX orders_client_order_id ON orders (account_id, client_order_id)
    WHERE client_order_id <> '';
CREATE INDEX orders_account ON orders (account_id, order_id DESC);
-- Resting orders (NEW = 1, PARTIALLY_FILLED = 2): books are rebuilt from these.
CREATE INDEX orders_open ON orders (instrument_id, priority) WHERE state IN (1, 2);

CREATE TABLE trades (
    trade_id          bigint PRIMARY KEY,
    instrument_id     integer NOT NULL REFERENCES instruments,
    sequence          bigint NOT NULL,
    price             bigint NOT NULL,
    quantity          bigint NOT NULL,
    taker_side        smallint NOT NULL,
    maker_order_id    bigint NOT NULL,
    taker_order_id    bigint NOT NULL,
    maker_account_id  bigint NOT NULL,
    taker_account_id  bigint NOT NULL,
    created_at        timestamptz NOT NULL,
    UNIQUE (instrument_id, sequence)
);
CREATE INDEX trades_instrument ON trades (instrument_id, trade_id DESC);
CREATE INDEX trades_maker_account ON trades (maker_account_id, trade_id DESC);
CREATE INDEX trades_taker_account ON trades (taker_account_id, trade_id DESC);
CREATE INDEX trades_maker_order ON trades (maker_order_id);
CREATE INDEX trades_taker_order ON trades (taker_order_id);

-- The journal: every event of every instrument, gapless per instrument.
-- kind: 1 accepted, 2 trade, 3 cancelled, 4 expired, 5 rejected.
-- The primary key makes a duplicate write impossible. Accepted and rejected
-- events carry the whole command (account, side, type, time in force,
-- post-only, client order id), so the book can be rebuilt from the journal
-- alone by re-executing them. A trade's other_order_id is the maker; a
-- cancelled or expired event's quantity is what was removed.
CREATE TABLE journal (
    instrument_id     integer NOT NULL,
    sequence          bigint NOT NULL,
    kind              smallint NOT NULL,
    order_id          bigint NOT NULL,
    other_order_id    bigint NOT NULL DEFAULT 0,
    price             bigint NOT NULL DEFAULT 0,
    quantity          bigint NOT NULL DEFAULT 0,
    account_id        bigint NOT NULL DEFAULT 0,
    side              smallint NOT NULL DEFAULT 0,
    order_type        smallint NOT NULL DEFAULT 0,
    time_in_force     smallint NOT NULL DEFAULT 0,
    post_only         boolean NOT NULL DEFAULT false,
    client_order_id   text NOT NULL DEFAULT '',
    owner_epoch       bigint NOT NULL,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (instrument_id, sequence)
);

-- Book snapshots: the resting orders of an instrument as of a sequence.
-- Recovery = the latest snapshot + the journal events after it.
CREATE TABLE book_snapshots (
    instrument_id     integer NOT NULL,
    sequence          bigint NOT NULL,
    orders            integer NOT NULL,
    data              bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, sequence)
);
