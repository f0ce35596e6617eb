-- DESIGN.md section 3: reference data, 1-minute bars and their metrics.
-- Volume is double precision: crypto sizes are fractional.

CREATE TABLE companies (
    symbol      text PRIMARY KEY,
    name        text,
    exchange    text,
    currency    text,
    sector      text,
    industry    text,
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bars_1m (
    symbol  text             NOT NULL,
    ts      timestamptz      NOT NULL,
    open    double precision NOT NULL,
    high    double precision NOT NULL,
    low     double precision NOT NULL,
    close   double precision NOT NULL,
    volume  double precision NOT NULL,
    trades  bigint,
    vwap    double precision,
    source  text             NOT NULL,
    PRIMARY KEY (symbol, ts)
);

CREATE TABLE metrics_1m (
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
    is_anomaly     boolean     NOT NULL DEFAULT false,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
);
