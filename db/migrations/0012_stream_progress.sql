-- Issue 17: every streaming micro-batch's progress, written by the job's driver after the batch (its
-- StreamingQueryListener): what the dashboard's pipeline page and the read API's /metrics show per job and query.
-- A batch id replayed after a restart replaces its row. Rows older than a week are purged by the jobs.
CREATE TABLE stream_progress (
    job             text        NOT NULL,  -- the Spark application (sparktrends-bars, ...)
    query           text        NOT NULL,  -- the streaming query's name
    batch_id        bigint      NOT NULL,
    at              timestamptz NOT NULL,  -- the trigger's start
    rows_in         bigint      NOT NULL,
    rows_per_s      double precision,
    duration_ms     bigint,                -- the whole trigger
    write_ms        bigint,                -- the foreachBatch write inside it
    late_dropped    bigint      NOT NULL DEFAULT 0,
    source          text,                  -- the Kafka source's description (its topic)
    offsets_behind  bigint,                -- the most offsets any partition is behind the topic's end
    watermark       timestamptz,
    PRIMARY KEY (job, query, batch_id)
);
CREATE INDEX stream_progress_recent ON stream_progress (at);
