-- Alert delivery (docs/alerts.md): the messages the alerter sent, which message settled each anomaly, and
-- a wake-up for the alerter when anomalies are inserted.

-- One row per message posted to Slack (or printed to the console). The per-symbol cooldown reads the last
-- one; it is inserted in the same transaction that marks its anomalies delivered, so it exists only if they
-- are.
CREATE TABLE alert_messages (
    id               bigserial   PRIMARY KEY,
    symbol           text        NOT NULL,
    lead_anomaly_id  bigint      NOT NULL REFERENCES anomalies (id),
    severity         text        NOT NULL,
    anomaly_count    integer     NOT NULL CHECK (anomaly_count >= 1),
    channel          text        NOT NULL CHECK (channel IN ('slack', 'console')),
    sent_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX alert_messages_symbol_recent ON alert_messages (symbol, sent_at DESC);

-- message_id: for a delivered row the message that carried it (as lead or folded); for a suppressed row the
-- message whose cooldown covered it. delivery_note: why, in words (folded, cooldown, console mode).
ALTER TABLE anomalies
    ADD COLUMN message_id     bigint REFERENCES alert_messages (id),
    ADD COLUMN delivery_note  text;

-- The alerter locks one symbol's due rows at a time.
CREATE INDEX anomalies_outbox_symbol ON anomalies (symbol, ts) WHERE status = 'pending';

-- NOTIFY is delivered at commit and identical notifications in one transaction are merged, so a statement
-- trigger wakes the alerter once per committed batch, with no per-row cost. The payload is empty: the
-- alerter reads the outbox, never trusts a message. Channel name: crates/alerter/src/listener.rs.
CREATE FUNCTION anomalies_notify_alerter() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sparktrends_anomalies', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER anomalies_notify_alerter
    AFTER INSERT ON anomalies
    FOR EACH STATEMENT EXECUTE FUNCTION anomalies_notify_alerter();
