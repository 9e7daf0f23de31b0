-- The perimeter: who may trade, who may operate, and how fast.
--
-- * Accounts can be disabled, and belong to a rate tier (per-account token
--   buckets and the open-order cap; 0 means "no limit").
-- * API keys get a public id (the prefix printed before the secret, shown in
--   listings; the secret itself is only ever stored as a SHA-256).
-- * Admin keys are a table of their own: a trading key can never act as one.
-- * Every admin call leaves an audit row (who, what, when, before, after).
-- * Instruments may be cancel-only (cancels accepted, new orders and amends
--   refused) as well as trading or halted (nothing accepted).
-- * Every change to keys, accounts, tiers, admin keys and instruments sends a
--   NOTIFY on channel `exchange_changes` from a trigger, so the services drop
--   their caches at once, whoever made the change (the admin API or SQL). The
--   payload is '<table>:<transaction id>'; a listener that has applied it says
--   so on `exchange_changes_applied` ('<transaction id>:<its backend pid>'), so
--   the admin API can answer only once every listening process has.

CREATE TABLE rate_tiers (
    name                  text PRIMARY KEY,
    -- Token buckets: sustained rate per second and burst (bucket size).
    orders_per_second     integer NOT NULL DEFAULT 0 CHECK (orders_per_second >= 0),
    orders_burst          integer NOT NULL DEFAULT 0 CHECK (orders_burst >= 0),
    cancels_per_second    integer NOT NULL DEFAULT 0 CHECK (cancels_per_second >= 0),
    cancels_burst         integer NOT NULL DEFAULT 0 CHECK (cancels_burst >= 0),
    queries_per_second    integer NOT NULL DEFAULT 0 CHECK (queries_per_second >= 0),
    queries_burst         integer NOT NULL DEFAULT 0 CHECK (queries_burst >= 0),
    -- Resting orders an account may have on one instrument.
    max_open_orders       integer NOT NULL DEFAULT 0 CHECK (max_open_orders >= 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rate_tiers (name, orders_per_second, orders_burst, cancels_per_second,
                        cancels_burst, queries_per_second, queries_burst, max_open_orders)
VALUES ('default', 50, 100, 100, 200, 20, 40, 500);

ALTER TABLE accounts
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN tier text NOT NULL DEFAULT 'default' REFERENCES rate_tiers (name);

ALTER TABLE api_keys
    ADD COLUMN key_id bigserial UNIQUE,
    -- The key's public part ("ex_<prefix>_<secret>"); '' for keys made before this.
    ADD COLUMN prefix text NOT NULL DEFAULT '';
CREATE INDEX api_keys_prefix ON api_keys (prefix) WHERE prefix <> '';
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE admin_keys (
    key_sha256        bytea PRIMARY KEY,
    key_id            bigserial UNIQUE,
    prefix            text NOT NULL,
    name              text NOT NULL,
    created_by        text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);
CREATE INDEX admin_keys_prefix ON admin_keys (prefix);

CREATE TABLE admin_audit (
    audit_id          bigserial PRIMARY KEY,
    -- The admin key that made the call: "<name> (<prefix>)".
    actor             text NOT NULL,
    -- The RPC, e.g. "RevokeApiKey".
    action            text NOT NULL,
    -- What it acted on, e.g. "api_key:ex_1a2b3c4d" or "instrument:BTC-USD".
    target            text NOT NULL,
    before            jsonb,
    after             jsonb,
    peer              text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE instruments DROP CONSTRAINT IF EXISTS instruments_status_check;
ALTER TABLE instruments ADD CONSTRAINT instruments_status_check
    CHECK (status IN ('trading', 'cancel_only', 'halted'));
ALTER TABLE instruments ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION exchange_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('exchange_changes', TG_TABLE_NAME || ':' || txid_current());
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION exchange_notify_change();
CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION exchange_notify_change();
CREATE TRIGGER rate_tiers_changed AFTER INSERT OR UPDATE OR DELETE ON rate_tiers
    FOR EACH STATEMENT EXECUTE FUNCTION exchange_notify_change();
CREATE TRIGGER admin_keys_changed AFTER INSERT OR UPDATE OR DELETE ON admin_keys
    FOR EACH STATEMENT EXECUTE FUNCTION exchange_notify_change();
CREATE TRIGGER instruments_changed AFTER INSERT OR UPDATE OR DELETE ON instruments
    FOR EACH STATEMENT EXECUTE FUNCTION exchange_notify_change();
