-- +goose Up
-- The outbox table's extra columns of a dead letter (those beyond the
-- relay's own), as a JSON object of PostgreSQL text values (null for NULL):
-- the outbox row is deleted once its event is dead-lettered, so this is the
-- only copy, and `relay deadletter replay` puts them back.
ALTER TABLE outbox_dead_letter ADD COLUMN IF NOT EXISTS columns jsonb;

-- +goose Down
ALTER TABLE outbox_dead_letter DROP COLUMN IF EXISTS columns;
