-- +goose Up
-- Events the sink rejected for their content (e.g. a timestamp ClickHouse
-- cannot store). The relay moves them here with the error instead of losing
-- them or stalling the stream; fix and re-insert them into outbox_event.
CREATE TABLE IF NOT EXISTS outbox_dead_letter (
    id               uuid        PRIMARY KEY,
    event_type       text        NOT NULL,
    event_date_time  timestamptz NOT NULL,
    environment      text        NOT NULL,
    event_context    jsonb       NOT NULL,
    metadata_version bigint      NOT NULL,
    error            text        NOT NULL,
    failed_at        timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE IF EXISTS outbox_dead_letter;
