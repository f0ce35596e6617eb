-- Issue 12: what the providers send that users need, one rule per bar, and stable reject codes.
-- Column names follow contracts/messages.json (the bar message, ts_ms stored as ts); tests/contract checks them.

-- The bar of record, one per symbol and minute. `origin` (contract: bar_origins) says whose bar it is; a
-- provider's own bar (exchange kline, vendor REST bar) wins over the one the bars job built from trades.
-- spark_jobs/metrics_store.py holds that rule; rows from before this migration count as the provider's.
ALTER TABLE bars_1m
    ADD COLUMN taker_buy_volume double precision,
    ADD COLUMN first_trade_id   bigint,
    ADD COLUMN last_trade_id    bigint,
    ADD COLUMN origin           text NOT NULL DEFAULT 'provider';
ALTER TABLE bars_1m ALTER COLUMN origin DROP DEFAULT;

-- Every version of a bar, one per origin, as it last arrived: the bar built from the trades we received and the
-- provider's bar of the same minute, side by side.
CREATE TABLE bar_versions (
    symbol            text             NOT NULL,
    ts                timestamptz      NOT NULL,
    origin            text             NOT NULL,
    source            text             NOT NULL,
    open              double precision NOT NULL,
    high              double precision NOT NULL,
    low               double precision NOT NULL,
    close             double precision NOT NULL,
    volume            double precision NOT NULL,
    trades            bigint,
    vwap              double precision,
    taker_buy_volume  double precision,
    first_trade_id    bigint,
    last_trade_id     bigint,
    received_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts, origin)
);

-- The second opinion: where a trade-built bar and the provider's bar of one minute both exist, do they agree?
-- A disagreement in the trade count, the trade-id range or the volume means trades were missed (a gap) or
-- counted twice; in a price, that some print was treated differently. Fields the provider does not send are
-- not compared. Volume and VWAP are sums of floats: they agree within a relative 1e-9.
CREATE VIEW bar_agreement AS
SELECT t.symbol, t.ts, p.source AS provider_source,
       t.trades AS built_trades, p.trades AS provider_trades,
       t.volume AS built_volume, p.volume AS provider_volume,
       mismatches, cardinality(mismatches) = 0 AS agrees
FROM bar_versions t
JOIN bar_versions p ON p.symbol = t.symbol AND p.ts = t.ts AND p.origin = 'provider'
CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
    CASE WHEN p.trades IS NOT NULL AND t.trades IS DISTINCT FROM p.trades THEN 'trades' END,
    CASE WHEN p.first_trade_id IS NOT NULL AND t.first_trade_id IS DISTINCT FROM p.first_trade_id
         THEN 'first_trade_id' END,
    CASE WHEN p.last_trade_id IS NOT NULL AND t.last_trade_id IS DISTINCT FROM p.last_trade_id
         THEN 'last_trade_id' END,
    CASE WHEN abs(t.volume - p.volume) > 1e-9 * greatest(abs(p.volume), 1e-12) THEN 'volume' END,
    CASE WHEN p.taker_buy_volume IS NOT NULL AND (t.taker_buy_volume IS NULL
              OR abs(t.taker_buy_volume - p.taker_buy_volume) > 1e-9 * greatest(abs(p.taker_buy_volume), 1e-12))
         THEN 'taker_buy_volume' END,
    CASE WHEN t.open <> p.open THEN 'open' END,
    CASE WHEN t.high <> p.high THEN 'high' END,
    CASE WHEN t.low <> p.low THEN 'low' END,
    CASE WHEN t.close <> p.close THEN 'close' END,
    CASE WHEN p.vwap IS NOT NULL AND (t.vwap IS NULL OR abs(t.vwap - p.vwap) > 1e-9 * p.vwap) THEN 'vwap' END
  ], NULL) AS mismatches) m
WHERE t.origin = 'trades';

-- Stable reject codes (contracts/admission.json) beside the human reason. Rows from before carry the code of
-- their old reason text.
ALTER TABLE rejected_messages ADD COLUMN reason_code text;
UPDATE rejected_messages SET reason_code = CASE
    WHEN reason = 'empty message' THEN 'empty_message'
    WHEN reason = 'malformed JSON' THEN 'malformed_json'
    WHEN reason LIKE 'missing %' THEN 'missing_field'
    WHEN reason LIKE 'ts_ms is in the future' THEN 'ts_in_future'
    WHEN reason LIKE 'ts_ms must be the start%' THEN 'ts_not_minute_aligned'
    WHEN reason LIKE 'ts_ms must be positive' THEN 'ts_out_of_range'
    WHEN reason LIKE 'price%' OR reason LIKE 'OHLC%' OR reason LIKE 'vwap%' THEN 'price_not_positive'
    WHEN reason LIKE 'size%' OR reason LIKE 'volume%' THEN 'size_negative'
    WHEN reason LIKE 'high/low%' THEN 'ohlc_inconsistent'
    ELSE 'malformed_json' END;
ALTER TABLE rejected_messages ALTER COLUMN reason_code SET NOT NULL;
CREATE INDEX rejected_messages_code ON rejected_messages (reason_code, received_at);
