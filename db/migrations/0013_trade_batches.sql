-- Issue 16: a trades-topic message may be a trade batch (contracts/messages.json trade.batch), many trades at one
-- Kafka offset, each admitted or refused on its own. A refusal's natural key gains its element, the trade's
-- position in the batch (0 for every other message and for a refusal of a whole message), so two refused trades
-- of one batch are two rows and a replayed micro-batch still inserts neither twice.
ALTER TABLE rejected_messages ADD COLUMN element integer NOT NULL DEFAULT 0;
ALTER TABLE rejected_messages DROP CONSTRAINT rejected_messages_pkey;
ALTER TABLE rejected_messages ADD PRIMARY KEY (topic, "partition", "offset", element);
