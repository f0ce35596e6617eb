"""Gap repair: the bars of minutes a feed missed trades in, rebuilt from every trade the topic holds for them.

Ingest notices a gap (a skipped trade id, a reconnect), fetches the missing trades from the exchange's REST API,
sends them to the trades topic like live ones (same ids), and then puts a gap message (contracts/messages.json
`gap`) on the gaps topic. Those trades arrive behind the bars query's watermark, so its lateness rule drops them;
this second query of the bars job, `gaps`, repairs the bars instead:

  1. each gap message goes into PostgreSQL `gaps` (idempotent on its natural key);
  2. for a repaired gap it waits until the bars query's watermark has passed the gap's last minute, so the bars
     query has emitted whatever short bars it was going to and will not overwrite the repair;
  3. it reads the trades topic from shortly before the gap (by Kafka timestamp) to now, keeps the symbol's valid
     trades of the gap's minutes, and builds their bars with the bars query's own code (`bars_job.build_bars`,
     duplicates dropped by trade id, so a trade received live and fetched again counts once);
  4. the bars go through `metrics_store.apply_bars`, like every closed bar: bars_1m and bar_versions, then the
     metrics from the earliest changed bar on, and the anomaly outbox (an anomaly on a bar older than the alert
     live window is recorded, not posted: docs/alerts.md); then onto the bars topic marked as applied;
  5. `gaps.bars_rebuilt` and `rebuilt_at` record that it happened.

Every step is idempotent, so a replayed micro-batch (a crash, a restart) rebuilds the same bars again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import contracts
from spark_jobs.common import kafka_bootstrap, produce
from spark_jobs.contracts import APPLIED_HEADER
from spark_jobs.detector_profiles import DetectorProfiles
from spark_jobs.metrics_store import Bar, apply_bars
from spark_jobs.store import insert_rejects, pg_connect
from spark_jobs.trade_minutes import MINUTE_MS
from sparktrends import contract

GAP = contract.messages()["gap"]
GAP_FIELDS = GAP.field_names
REQUIRED = [f.name for f in GAP.fields if f.required]
REPAIRED = "repaired"  # contract gap_outcomes: the missing trades are on the trades topic
assert REPAIRED in contract.names("gap_outcomes")
# Read the trades topic from this long before a gap's first minute: a trade is produced after its event time,
# and this covers a producer's clock running somewhat behind the exchange's.
READ_MARGIN_MS = 5 * MINUTE_MS
# How often the wait for the bars query's watermark says what it waits for.
WAIT_REPORT_S = 60.0


@dataclass(frozen=True)
class Gap:
    source: str
    symbol: str
    cause: str
    outcome: str
    from_ts_ms: int
    to_ts_ms: int
    first_missing_id: int | None
    last_missing_id: int | None
    repaired_trades: int
    detected_ms: int

    @property
    def minutes(self) -> range:
        """Start (ms) of every minute the gap touches: the last bar before it to the first bar after it."""
        first = self.from_ts_ms - self.from_ts_ms % MINUTE_MS
        last = self.to_ts_ms - self.to_ts_ms % MINUTE_MS
        return range(first, last + MINUTE_MS, MINUTE_MS)

    @property
    def end_ms(self) -> int:
        """End of the gap's last minute: the watermark must reach it before the rebuild."""
        return self.minutes[-1] + MINUTE_MS


def parse_gap(value: bytes | str | None) -> tuple[Gap | None, str | None]:
    """A gap message -> (Gap, None), or (None, reject code of contracts/admission.json) for what is not one.
    Only ingest writes the topic, so this checks what the rebuild relies on rather than the full admission."""
    try:
        payload = json.loads(value) if value is not None else None
    except ValueError:
        return None, "malformed_json"
    if not isinstance(payload, dict):
        return None, "malformed_json"
    if any(payload.get(name) is None for name in REQUIRED):
        return None, "missing_field"
    try:
        gap = Gap(**{name: payload.get(name) for name in GAP_FIELDS})
    except TypeError:
        return None, "malformed_json"
    if gap.cause not in contract.names("gap_causes") or gap.outcome not in contract.names("gap_outcomes"):
        return None, "unknown_name"
    if gap.to_ts_ms < gap.from_ts_ms:
        return None, "ts_out_of_range"
    return gap, None


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def record_gaps(gaps: Sequence[Gap]) -> None:
    """Into `gaps`, each once."""
    if not gaps:
        return
    rows = [
        (g.source, g.symbol, g.cause, g.outcome, _utc(g.from_ts_ms), _utc(g.to_ts_ms), g.first_missing_id,
         g.last_missing_id, g.repaired_trades, _utc(g.detected_ms))
        for g in gaps
    ]  # fmt: skip
    with pg_connect() as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO gaps (source, symbol, cause, outcome, from_ts, to_ts, first_missing_id, last_missing_id, "
            "repaired_trades, detected_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            rows,
        )


def mark_rebuilt(gaps: Sequence[Gap], bars_per_symbol: dict[str, int]) -> None:
    with pg_connect() as conn, conn.cursor() as cur:
        cur.executemany(
            "UPDATE gaps SET bars_rebuilt = %s, rebuilt_at = now() "
            "WHERE source = %s AND symbol = %s AND cause = %s AND from_ts = %s AND to_ts = %s",
            [
                (bars_per_symbol.get(g.symbol, 0), g.source, g.symbol, g.cause, _utc(g.from_ts_ms), _utc(g.to_ts_ms))
                for g in gaps
            ],
        )


def wait_for_watermark(watermark_ms: Callable[[], int | None], end_ms: int, job: str) -> None:
    """Blocks until the bars query's watermark reaches `end_ms`. It only moves while trades arrive; a feed that
    stays silent leaves the gap unrebuilt until it speaks again, which is also when its bars would close."""
    last_report = time.monotonic()
    while (current := watermark_ms()) is None or current < end_ms:
        if time.monotonic() - last_report >= WAIT_REPORT_S:
            seen = "none yet" if current is None else f"{_utc(current):%H:%M:%S}"
            print(f"[{job}] gap rebuild waits for the bars watermark to pass {_utc(end_ms):%H:%M:%S} (now {seen})",
                  flush=True)  # fmt: skip
            last_report = time.monotonic()
        time.sleep(0.5)


def trades_of_minutes(spark: SparkSession, topic: str, gaps: Sequence[Gap]) -> DataFrame:
    """The admitted, valid trades of the gaps' symbols and minutes, read from the trades topic in one batch, as
    the bars query's minute rows (contracts.admit_trade_minutes)."""
    minutes = sorted({(g.symbol, m) for g in gaps for m in g.minutes})
    start = min(m for _, m in minutes) - READ_MARGIN_MS
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap())
        .option("subscribe", topic)
        .option("startingTimestamp", str(start))
        # A partition with nothing since `start` has nothing to rebuild from: start it at its end.
        .option("startingOffsetsByTimestampStrategy", "latest")
        .option("endingOffsets", "latest")
        .option("failOnDataLoss", "false")
        .load()
    )
    wanted = spark.createDataFrame(minutes, "symbol string, minute_ms long")
    admitted = contracts.admit_trade_minutes(raw).filter(F.col("reject_code").isNull())
    minute = admitted["ts_ms"] - admitted["ts_ms"] % MINUTE_MS  # a row's trades share its minute
    return admitted.join(
        F.broadcast(wanted), (admitted["symbol"] == wanted["symbol"]) & (minute == wanted["minute_ms"]), "left_semi"
    )


def rebuild_bars(spark: SparkSession, topic: str, gaps: Sequence[Gap]) -> list[Bar]:
    """The bars of the gaps' minutes, as the bars query builds them."""
    from spark_jobs.bars_job import build_bars, with_event_time  # the bars job imports this module

    trades = with_event_time(trades_of_minutes(spark, topic, gaps), "0 seconds")
    bars = build_bars(trades).collect()
    return [Bar.of(row.asDict()) for row in bars]


def repair(
    spark: SparkSession,
    trades_topic: str,
    bars_topic: str,
    watermark_ms: Callable[[], int | None],
    profiles: DetectorProfiles | None = None,
    job: str = "bars",
) -> Callable[[DataFrame, int], None]:
    """foreachBatch function of the `gaps` query (see the module docstring)."""

    def write(batch: DataFrame, batch_id: int) -> None:
        rows = batch.select(*contracts.KAFKA_COLUMNS, "value").collect()
        gaps: list[Gap] = []
        rejects: list[dict[str, Any]] = []
        for row in rows:
            gap, code = parse_gap(row["value"])
            if gap is not None:
                gaps.append(gap)
            else:
                raw = bytes(row["value"] or b"").decode("utf-8", "replace")
                rejects.append(
                    {"topic": row["topic"], "partition": row["partition"], "offset": row["offset"], "element": 0,
                     "reject_code": code, "reject_reason": f"not a gap message: {code}", "raw": raw}
                )  # fmt: skip
        insert_rejects("bars_job", rejects)
        record_gaps(gaps)
        repaired = [g for g in gaps if g.outcome == REPAIRED]
        if not repaired:
            return
        wait_for_watermark(watermark_ms, max(g.end_ms for g in repaired), job)
        started = time.monotonic()
        bars = rebuild_bars(spark, trades_topic, repaired)
        result = apply_bars(bars, profiles=profiles)
        produce(bars_topic, [(b.symbol, b.to_json()) for b in bars], headers={APPLIED_HEADER: "bars_job"})
        per_symbol: dict[str, int] = {}
        for bar in bars:
            per_symbol[bar.symbol] = per_symbol.get(bar.symbol, 0) + 1
        mark_rebuilt(repaired, per_symbol)
        print(
            f"[{job}] batch={batch_id} rebuilt {len(bars)} bar(s) of {len(repaired)} repaired gap(s) "
            f"({', '.join(f'{s}={n}' for s, n in sorted(per_symbol.items()))}); metrics_upserted={result.metric_rows} "
            f"new_anomalies={result.new_anomalies} in {time.monotonic() - started:.2f}s",
            flush=True,
        )

    return write
