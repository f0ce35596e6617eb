-- Issue 15: trades a feed missed (a skipped trade id, a reconnect), what ingest's repair fetched, and when the bars
-- job rebuilt the minutes involved. Columns follow the gap message of contracts/messages.json (ts_ms stored as
-- timestamptz); natural key: one gap of a symbol from one trade to another, so a re-delivered message is a no-op.

CREATE TABLE gaps (
    source            text        NOT NULL,
    symbol            text        NOT NULL,
    cause             text        NOT NULL,
    outcome           text        NOT NULL,
    from_ts           timestamptz NOT NULL,
    to_ts             timestamptz NOT NULL,
    first_missing_id  bigint,
    last_missing_id   bigint,
    repaired_trades   bigint      NOT NULL,
    detected_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when the bars job rebuilt the bars of from_ts..to_ts from every trade the topic holds for them.
    bars_rebuilt      integer,
    rebuilt_at        timestamptz,
    PRIMARY KEY (source, symbol, cause, from_ts, to_ts)
);

CREATE INDEX gaps_symbol ON gaps (symbol, detected_at);

-- Per feed and symbol: how many gaps, how many trades they skipped, how many the repair sent back, and what is
-- still open (not rebuilt yet, or unrepairable). A reconnect that missed nothing (outcome 'empty') is counted
-- apart: it is no gap.
CREATE VIEW gaps_by_symbol AS
SELECT source, symbol,
       count(*) FILTER (WHERE outcome <> 'empty') AS gaps,
       count(*) FILTER (WHERE outcome = 'empty') AS clean_reconnects,
       coalesce(sum(last_missing_id - first_missing_id + 1), 0) AS missing_trades,
       sum(repaired_trades) AS repaired_trades,
       count(*) FILTER (WHERE outcome = 'unrepairable') AS unrepairable,
       count(*) FILTER (WHERE outcome = 'repaired' AND rebuilt_at IS NULL) AS awaiting_rebuild,
       max(detected_at) AS last_gap_at
FROM gaps
GROUP BY source, symbol;

-- The health of each symbol's data in one row: newest bar, and what was lost, late, refused or repaired.
CREATE VIEW feed_health AS
WITH bars AS (SELECT symbol, max(ts) AS last_bar, count(*) FILTER (WHERE ts > now() - interval '1 hour') AS bars_last_hour
              FROM bars_1m GROUP BY symbol)
SELECT coalesce(b.symbol, g.symbol, l.symbol) AS symbol,
       b.last_bar, b.bars_last_hour,
       coalesce(g.gaps, 0) AS gaps, coalesce(g.missing_trades, 0) AS missing_trades,
       coalesce(g.repaired_trades, 0) AS repaired_trades, coalesce(g.unrepairable, 0) AS unrepairable_gaps,
       coalesce(g.awaiting_rebuild, 0) AS gaps_awaiting_rebuild,
       coalesce(l.trades, 0) AS late_trades
FROM bars b
FULL JOIN (SELECT symbol, sum(gaps) AS gaps, sum(missing_trades) AS missing_trades,
                  sum(repaired_trades) AS repaired_trades, sum(unrepairable) AS unrepairable,
                  sum(awaiting_rebuild) AS awaiting_rebuild
           FROM gaps_by_symbol GROUP BY symbol) g ON g.symbol = b.symbol
FULL JOIN (SELECT symbol, sum(trades) AS trades FROM late_trades_by_symbol GROUP BY symbol) l
       ON l.symbol = coalesce(b.symbol, g.symbol);

-- Alerts stay honest (docs/alerts.md): an anomaly found on a bar that is no longer live (a repaired gap seen late,
-- a backfill, a recompute of history) is recorded with status 'recorded' and never posted as if it were news.
-- Live means: the bar closed at most alert_live_window() ago when the anomaly was found. The database setting
-- sparktrends.alert_live_window overrides the default (ALTER DATABASE ... SET sparktrends.alert_live_window = ...).
CREATE FUNCTION alert_live_window() RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('sparktrends.alert_live_window', true), '')::interval,
                    interval '10 minutes')
$$;

ALTER TABLE anomalies DROP CONSTRAINT anomalies_status_check;
ALTER TABLE anomalies ADD CONSTRAINT anomalies_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'suppressed', 'recorded'));
