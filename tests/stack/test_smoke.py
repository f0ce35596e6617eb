"""End to end through every real part: Kafka broker -> Spark standalone cluster (JVM Kafka connector)
-> PostgreSQL over JDBC."""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Producer

from tests.conftest import master_json


def test_trades_flow_from_kafka_through_spark_cluster_into_postgres(stack_settings, kafka_topic, submit, pg):
    topic = kafka_topic("smoke")
    now_ms = int(time.time() * 1000)
    trades = [
        {
            "source": "smoke",
            "symbol": sym,
            "ts_ms": now_ms + i,
            "price": 100.0 + i,
            "size": 0.5 * (i + 1),
            "trade_id": f"{sym}-{i}",
        }
        for i, sym in enumerate(["BTCUSDT", "ETHUSDT", "AAPL", "BTCUSDT", "MSFT"])
    ]
    producer = Producer({"bootstrap.servers": stack_settings.kafka_bootstrap, "enable.idempotence": True})
    for t in trades:
        producer.produce(topic, key=t["symbol"], value=json.dumps(t))
    assert producer.flush(10) == 0

    table = f"smoke_{uuid.uuid4().hex[:8]}"
    # Created by the owner: the job connects as the application role, which may fill a table but not create one.
    pg.execute(
        f'CREATE TABLE {table} (kafka_key text, "partition" integer, "offset" bigint, source text, symbol text, '
        "ts_ms bigint, price double precision, size double precision, trade_id text)"
    )
    app_name = f"sparktrends-smoke-{uuid.uuid4().hex[:8]}"
    result = submit("smoke_kafka_to_postgres", "--topic", topic, "--table", table, "--app-name", app_name)
    assert f"wrote {len(trades)} trades" in result.stdout

    rows = pg.execute(f"SELECT kafka_key, symbol, ts_ms, price, size, trade_id FROM {table} ORDER BY ts_ms").fetchall()
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (t["symbol"], t["ts_ms"], t["price"], t["size"], t["trade_id"]) for t in trades
    ]
    assert all(r[0] == r[1] for r in rows), "Kafka key must be the symbol"

    # The application ran on the standalone cluster (not local[*]) and finished cleanly.
    deadline = time.monotonic() + 30
    while True:
        apps = [a for a in master_json(stack_settings).get("completedapps", []) if a["name"] == app_name]
        if apps or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert apps, f"{app_name} not among the master's completed applications"
    assert apps[0]["state"] == "FINISHED"
