-- The relay's default outbox (RELAY_OUTBOX_TABLE=outbox_event): an application inserts here
-- in the same transaction as its business rows. The relay streams the INSERTs from a logical
-- replication slot and deletes rows once they are in ClickHouse, so the table holds exactly
-- the undelivered events. `relay migrate` creates it when a stream uses it and it is missing;
-- an outbox table of any other name is the application's, never created or altered.
-- (It was the goose migration 00001 until the outbox became configurable: databases that
-- applied it keep their table and goose's record of it.)
CREATE TABLE IF NOT EXISTS outbox_event (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type       text        NOT NULL,
    event_date_time  timestamptz NOT NULL DEFAULT now(),
    environment      text        NOT NULL,
    event_context    jsonb       NOT NULL,
    metadata_version bigint      NOT NULL DEFAULT 1
);
