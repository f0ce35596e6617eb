-- Issue 15, after 0008: a trades backfill also asks for its minutes' bars through a gap message (cause 'backfill'),
-- but it lost nothing, so it is no gap; and the health view shows the other sign of missed trades, minutes whose
-- trade-built bar disagrees with the exchange's kline (bar_agreement, migration 0006).

CREATE OR REPLACE VIEW gaps_by_symbol AS
SELECT source, symbol,
       count(*) FILTER (WHERE outcome <> 'empty' AND cause <> 'backfill') AS gaps,
       count(*) FILTER (WHERE outcome = 'empty') AS clean_reconnects,
       coalesce(sum(last_missing_id - first_missing_id + 1) FILTER (WHERE cause <> 'backfill'), 0) AS missing_trades,
       coalesce(sum(repaired_trades) FILTER (WHERE cause <> 'backfill'), 0) AS repaired_trades,
       count(*) FILTER (WHERE outcome = 'unrepairable') AS unrepairable,
       count(*) FILTER (WHERE outcome = 'repaired' AND rebuilt_at IS NULL) AS awaiting_rebuild,
       max(detected_at) AS last_gap_at
FROM gaps
GROUP BY source, symbol;

CREATE OR REPLACE VIEW feed_health AS
WITH bars AS (SELECT symbol, max(ts) AS last_bar, count(*) FILTER (WHERE ts > now() - interval '1 hour') AS bars_last_hour
              FROM bars_1m GROUP BY symbol)
SELECT coalesce(b.symbol, g.symbol, l.symbol) AS symbol,
       b.last_bar, b.bars_last_hour,
       coalesce(g.gaps, 0) AS gaps, coalesce(g.missing_trades, 0) AS missing_trades,
       coalesce(g.repaired_trades, 0) AS repaired_trades, coalesce(g.unrepairable, 0) AS unrepairable_gaps,
       coalesce(g.awaiting_rebuild, 0) AS gaps_awaiting_rebuild,
       coalesce(l.trades, 0) AS late_trades,
       (SELECT count(*) FROM bar_agreement a WHERE a.symbol = coalesce(b.symbol, g.symbol, l.symbol) AND NOT a.agrees)
           AS kline_disagreements
FROM bars b
FULL JOIN (SELECT symbol, sum(gaps) AS gaps, sum(missing_trades) AS missing_trades,
                  sum(repaired_trades) AS repaired_trades, sum(unrepairable) AS unrepairable,
                  sum(awaiting_rebuild) AS awaiting_rebuild
           FROM gaps_by_symbol GROUP BY symbol) g ON g.symbol = b.symbol
FULL JOIN (SELECT symbol, sum(trades) AS trades FROM late_trades_by_symbol GROUP BY symbol) l
       ON l.symbol = coalesce(b.symbol, g.symbol);
