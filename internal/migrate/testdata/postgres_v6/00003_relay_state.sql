-- +goose Up
-- Per-slot state of the relay. backfill_pending is set before the relay
-- creates its slot and cleared only after every row of the slot's snapshot is
-- in the sink: a relay killed in between finds it set and delivers the table's
-- rows again (duplicates collapse in the sink's read path).
CREATE TABLE IF NOT EXISTS outbox_relay_state (
    slot             text        PRIMARY KEY,
    backfill_pending boolean     NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE IF EXISTS outbox_relay_state;
