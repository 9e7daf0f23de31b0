-- CancelAllOrders and the OrderEntry dead-man timer look up the instruments where an
-- account has open orders (resting NEW = 1 and PARTIALLY_FILLED = 2, and untriggered
-- stops UNTRIGGERED = 7). Without this index that reads every order the account ever
-- placed (orders_account); with it, only its open ones.
CREATE INDEX orders_account_open ON orders (account_id, instrument_id)
    WHERE state IN (1, 2, 7);
