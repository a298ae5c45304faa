-- +goose Up
-- The batches the relay is inserting into ClickHouse, by the range of the
-- stream they hold (see package batch): first and last event as (commit LSN
-- of its transaction, index of the event in it). A range is recorded before
-- its INSERT and marked done in the transaction that deletes its rows from
-- the outbox. After a crash the relay rebuilds every recorded range past the
-- slot's confirmed position exactly (same events, order and relayed_at) and
-- inserts the ones not done again with the same identity, which ClickHouse
-- drops if it already has them. Rows are removed once the slot has
-- confirmed past their last transaction. LSNs are stored as bigint.
CREATE TABLE IF NOT EXISTS outbox_relay_batch (
    slot        text        NOT NULL,
    first_lsn   bigint      NOT NULL,
    first_index integer     NOT NULL,
    last_lsn    bigint      NOT NULL,
    last_index  integer     NOT NULL,
    ends_tx     boolean     NOT NULL,
    events      integer     NOT NULL,
    relayed_at  timestamptz NOT NULL,
    done        boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (slot, first_lsn, first_index)
);

-- +goose Down
DROP TABLE IF EXISTS outbox_relay_batch;
