-- Every state change and fill of an account's orders, numbered per account (1, 2, 3, ...
-- with no gap), written by the matching commit that journals the events they come from
-- (matching_service/updates.py and store.py): an update exists exactly when its journal
-- event does. OrderService.StreamOrderUpdates reads them after a client's position.
--
-- A row holds what changes (the order right after the event: its state, price,
-- quantity, what has filled, its reason and hold) and which journal event it comes from
-- (the order id carries the instrument: order_id >> 44; journal_sequence the event's
-- sequence, kind its kind). Everything else is read when the rows are read, not written
-- twice: the event's time from `journal`, what never changes of the order (side, type,
-- client_order_id, ...) from `orders`, a fill's price, quantity and fee from `trades`
-- (trade id = instrument << 44 | journal_sequence).
CREATE TABLE order_updates (
    account_id        bigint NOT NULL,
    sequence          bigint NOT NULL,
    journal_sequence  bigint NOT NULL,
    kind              smallint NOT NULL,      -- journal.kind of the event
    order_id          bigint NOT NULL,
    state             smallint NOT NULL,
    price             bigint NOT NULL,
    quantity          bigint NOT NULL,
    filled            bigint NOT NULL,
    filled_notional   numeric NOT NULL,
    reason            text NOT NULL DEFAULT '',
    held              bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, sequence)
);

-- Each account's latest update sequence. The matching commit advances it, locking the
-- rows in account order after the balance rows it locks (docs/money.md: balances
-- sorted, then these sorted), and notifies `exchange_order_updates` with
-- '<account>:<last sequence>,...' so that order services wake their subscribers.
CREATE TABLE account_update_sequences (
    account_id        bigint PRIMARY KEY,
    last_sequence     bigint NOT NULL
);
