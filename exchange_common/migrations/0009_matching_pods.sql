-- Live instrument hand-over and failback (issue 15; matching_service/placement.py).
--
-- matching_pods: every matching pod that ever started, by name (EXCHANGE_MATCHING_NAME).
-- A row counts as live only while the session that holds the pod's instrument locks
-- (its owner session) lives: that session's backend pid and start time are recorded,
-- and looked up in pg_stat_activity, so liveness is exact without heartbeats.
-- reserved_until: after a clean stop with EXCHANGE_MATCHING_RESTART_GRACE > 0, the
-- instruments at home on the pod are kept for its next incarnation until then.
CREATE TABLE matching_pods (
    name              text PRIMARY KEY,
    address           text NOT NULL,
    home              text NOT NULL DEFAULT '',
    may_own           text NOT NULL DEFAULT '*',
    backend_pid       integer,
    backend_start     timestamptz,
    started_at        timestamptz NOT NULL DEFAULT now(),
    reserved_until    timestamptz
);

CREATE VIEW live_matching_pods AS
SELECT p.* FROM matching_pods p
  JOIN pg_stat_activity a ON a.pid = p.backend_pid AND a.backend_start = p.backend_start;

-- owner_name: the pod that took the instrument last (with owner_address and owner_epoch).
-- assigned_to: the pod an admin moved it to (AdminService.MoveInstrument); it is the
-- instrument's home while that pod is live or reserved, before EXCHANGE_MATCHING_HOME.
-- handover_to / handover_until: the owner is handing it over; until then only that pod
-- (while live) may take it.
ALTER TABLE instrument_state
    ADD COLUMN owner_name text,
    ADD COLUMN assigned_to text,
    ADD COLUMN handover_to text,
    ADD COLUMN handover_until timestamptz;

-- Who owned what, epoch by epoch (a row per take): how an instrument moved.
CREATE TABLE ownership_history (
    instrument_id     integer NOT NULL REFERENCES instruments,
    owner_epoch       bigint NOT NULL,
    owner_name        text,
    owner_address     text,
    taken_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, owner_epoch)
);
