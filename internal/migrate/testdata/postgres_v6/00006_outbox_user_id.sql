-- +goose Up
-- An extra column of the outbox: the demo API stamps the created user's id on its
-- user_created events, and the relay carries it to event_log.user_id (added there as
-- Nullable(UUID) by `relay run`, see README "Adding a column"), so ClickHouse can filter
-- and join on it without parsing event_context. Other events leave it NULL.
ALTER TABLE outbox_event ADD COLUMN IF NOT EXISTS user_id uuid;

-- +goose Down
ALTER TABLE outbox_event DROP COLUMN IF EXISTS user_id;
