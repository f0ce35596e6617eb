-- Executors write a micro-batch's recomputed metrics here over JDBC (in parallel); the driver then merges
-- them into metrics_1m and the anomalies outbox in ONE transaction and deletes its run's rows.
-- UNLOGGED: the rows are transient and re-creatable from bars_1m, so they need no WAL.

CREATE UNLOGGED TABLE metrics_staging (
    run_id         text        NOT NULL,
    symbol         text        NOT NULL,
    ts             timestamptz NOT NULL,
    ret            double precision,
    log_ret        double precision,
    vol_cc         double precision,
    vol_ewma       double precision,
    vol_parkinson  double precision,
    vol_gk         double precision,
    vol_rs         double precision,
    vol_yz         double precision,
    vwap_roll      double precision,
    vwap_dev       double precision,
    volume_z       double precision,
    return_z       double precision,
    robust_z       double precision,
    anomaly_score  double precision,
    is_anomaly     boolean,
    anomaly_kinds  text,
    severity       text,
    staged_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX metrics_staging_run ON metrics_staging (run_id);
