-- +goose Up
-- A dead letter keeps the whole event. columns: the outbox table's extra
-- columns (those beyond the relay's own), as a JSON object of PostgreSQL
-- text values (null for NULL): the outbox row is deleted once its event is
-- dead-lettered, so this is the only copy, and `relay deadletter replay`
-- puts them back. raw: the payload of a logical decoding message with the
-- outbox prefix that holds no event (anyone may emit one); such a dead
-- letter is shown and discarded, never replayed.
ALTER TABLE outbox_dead_letter ADD COLUMN IF NOT EXISTS columns jsonb;
ALTER TABLE outbox_dead_letter ADD COLUMN IF NOT EXISTS raw bytea;

-- +goose Down
ALTER TABLE outbox_dead_letter DROP COLUMN IF EXISTS raw;
ALTER TABLE outbox_dead_letter DROP COLUMN IF EXISTS columns;
