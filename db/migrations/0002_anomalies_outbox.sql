-- Anomalies double as the alert outbox (DESIGN.md section 6): the delivery state lives on the row,
-- so an anomaly and its pending alert are committed in one transaction.

CREATE TABLE anomalies (
    id               bigserial PRIMARY KEY,
    symbol           text             NOT NULL,
    ts               timestamptz      NOT NULL,
    kind             text             NOT NULL,
    score            double precision NOT NULL,
    severity         text             NOT NULL,
    details          jsonb            NOT NULL DEFAULT '{}'::jsonb,
    detected_at      timestamptz      NOT NULL DEFAULT now(),
    status           text             NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'suppressed')),
    attempts         integer          NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz      NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text,
    UNIQUE (symbol, ts, kind)
);

-- The alerter's claim query scans only undelivered rows, oldest due first.
CREATE INDEX anomalies_outbox_due ON anomalies (next_attempt_at) WHERE status = 'pending';
