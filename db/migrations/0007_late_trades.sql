-- Valid trades the bars job dropped as too late (behind its watermark), per symbol and micro-batch. Spark reports
-- only a total per batch; the job finds the symbols by re-reading that batch's offsets (spark_jobs/late_trades.py).
-- Natural key: the streaming query's id (new with a new checkpoint), its batch and the symbol, so a replayed batch
-- records nothing twice.

CREATE TABLE late_trades (
    query_id     uuid        NOT NULL,
    batch_id     bigint      NOT NULL,
    source       text        NOT NULL,
    symbol       text        NOT NULL,
    trades       integer     NOT NULL CHECK (trades > 0),
    first_ts     timestamptz NOT NULL,
    last_ts      timestamptz NOT NULL,
    watermark    timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_id, batch_id, source, symbol)
);

CREATE INDEX late_trades_symbol ON late_trades (symbol, recorded_at);

-- What a person asks first: which symbols lose trades to lateness, how many, and how late was the latest.
CREATE VIEW late_trades_by_symbol AS
SELECT source, symbol, sum(trades) AS trades, count(*) AS batches, max(last_ts) AS latest_trade_ts,
       max(recorded_at) AS last_seen
FROM late_trades
GROUP BY source, symbol;
