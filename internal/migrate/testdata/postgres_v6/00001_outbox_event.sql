-- +goose Up
-- The outbox: an application inserts here in the same transaction as its business rows.
-- The relay streams the INSERTs from a logical replication slot and deletes rows once they
-- are in ClickHouse, so the table holds exactly the undelivered events.
CREATE TABLE IF NOT EXISTS outbox_event (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type       text        NOT NULL,
    event_date_time  timestamptz NOT NULL DEFAULT now(),
    environment      text        NOT NULL,
    event_context    jsonb       NOT NULL,
    metadata_version bigint      NOT NULL DEFAULT 1
);

-- +goose Down
DROP TABLE IF EXISTS outbox_event;
