-- The hot tables are written by one writer per instrument (the matching pod
-- that owns it), in group commits. Make each row cheaper to write:
--
-- * No foreign keys on orders and trades: a foreign key costs a lookup in the
--   referenced table for every inserted row (about a third of PostgreSQL's CPU
--   per order in bench/commit.py). The writer only ever uses instrument ids
--   it loaded from `instruments` and account ids the order service resolved
--   from an API key, and neither table's rows are ever deleted.
-- * trades(instrument_id, sequence) needs no unique constraint of its own:
--   trade_id is instrument_id << 44 | sequence (exchange_common/ids.py), so
--   the primary key already makes that pair unique.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_instrument_id_fkey;
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_account_id_fkey;
ALTER TABLE trades DROP CONSTRAINT IF EXISTS trades_instrument_id_fkey;
ALTER TABLE trades DROP CONSTRAINT IF EXISTS trades_instrument_id_sequence_key;
