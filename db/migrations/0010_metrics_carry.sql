-- Each symbol's carried kernel state after its last computed bar (issue 16): a live bar's metrics continue from
-- it, so a micro-batch reads one carry and its new bars instead of 512 warm-up bars per symbol.
--
-- Written in the same transaction as the metrics it continues (spark_jobs/metrics_store.py), under the symbol's
-- advisory lock, so it always describes the last metrics_1m row of the symbol. `state` is the versioned byte
-- encoding of sparktrends.CarryState (a few kB); a carry that cannot be restored (another version, other windows)
-- is ignored and the symbol warms up from its bars once. A late or corrected bar at or before `last_ts`
-- recomputes from the warm-up and replaces the carry; a batch recompute (recompute_job) deletes the carries of its
-- symbols.
CREATE TABLE metrics_carry (
    symbol      text        PRIMARY KEY,
    last_ts     timestamptz NOT NULL,
    profile     text        NOT NULL,
    state       bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
