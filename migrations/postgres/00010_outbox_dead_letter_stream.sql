-- +goose Up
-- A dead letter says where it came from and where it was going. stream: the
-- relay's stream (config streams; 'default' for RELAY_OUTBOX_TABLE, and for
-- every dead letter stored before streams existed). clickhouse_table: the
-- destination table the event was rejected by; NULL when none could be
-- resolved (a routed value that makes no valid table name, a message that
-- held no event). Rows stored before this migration were all rejected by
-- event_log, the one table the relay wrote then. outbox_key: the outbox
-- row's primary key as text when it is not a uuid (the event id is then
-- derived from it), so that `relay deadletter replay` puts the row back
-- under the same key and the event keeps its identity.
ALTER TABLE outbox_dead_letter ADD COLUMN IF NOT EXISTS stream text NOT NULL DEFAULT 'default';
ALTER TABLE outbox_dead_letter ADD COLUMN IF NOT EXISTS clickhouse_table text;
ALTER TABLE outbox_dead_letter ADD COLUMN IF NOT EXISTS outbox_key text;
UPDATE outbox_dead_letter SET clickhouse_table = 'event_log' WHERE clickhouse_table IS NULL AND raw IS NULL;

-- +goose Down
ALTER TABLE outbox_dead_letter DROP COLUMN IF EXISTS outbox_key;
ALTER TABLE outbox_dead_letter DROP COLUMN IF EXISTS clickhouse_table;
ALTER TABLE outbox_dead_letter DROP COLUMN IF EXISTS stream;
