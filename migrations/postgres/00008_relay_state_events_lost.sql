-- +goose Up
-- Message mode (RELAY_MESSAGE_PREFIX): events carried by logical decoding
-- messages exist only in WAL, so when the relay's slot is lost or recreated
-- the messages of the gap are gone. The relay records when that happened;
-- relay status and /readyz stay CRITICAL ("events may have been lost") until
-- an operator has reconciled and cleared it:
--   UPDATE outbox_relay_state SET events_lost_at = NULL WHERE slot = '<slot>';
ALTER TABLE outbox_relay_state ADD COLUMN IF NOT EXISTS events_lost_at timestamptz;

-- +goose Down
ALTER TABLE outbox_relay_state DROP COLUMN IF EXISTS events_lost_at;
