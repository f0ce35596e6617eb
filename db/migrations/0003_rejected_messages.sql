-- Malformed or invalid input, kept with its reason and Kafka coordinates (DESIGN.md section 3).
-- Natural key = Kafka coordinates, so a replayed micro-batch cannot insert a reject twice.

CREATE TABLE rejected_messages (
    source       text        NOT NULL,
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    reason       text        NOT NULL,
    raw          text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, "partition", "offset")
);
