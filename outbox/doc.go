// Package outbox is the publishing side of the Transactional Outbox pattern.
//
// An application writes its business rows and the events describing them in
// one Postgres transaction: it begins the transaction, changes its own tables,
// calls [Publisher.Publish] with the same transaction, and commits. Either both
// the business change and its events become visible, or neither does. The
// relay (cmd relay run) streams the committed outbox INSERTs from a logical
// replication slot to ClickHouse and deletes the delivered rows, so the outbox
// table only ever holds undelivered events.
//
// Contract:
//
//   - The caller owns the transaction. This package never begins, commits or
//     rolls back; it issues exactly one INSERT statement per Publish call, on
//     the [Execer] it is given (in message mode one SELECT that emits
//     them). If Publish returns an error the statement may
//     have failed inside the transaction, which Postgres then aborts: the
//     caller must roll back.
//   - Passing a pool or a plain connection instead of a transaction is allowed
//     and makes the insert its own (auto-committed) transaction — the events
//     are then no longer tied to any business change.
//   - All events are validated before anything is sent; one invalid event
//     rejects the whole call with a [*ValidationError] and nothing is written.
//   - Event ids are generated client-side (UUIDv4) unless set, and returned in
//     event order, so callers can log or correlate them.
//   - Delivery downstream is at-least-once: consumers deduplicate by id.
//
// # Message mode
//
// With [WithMessages] (PostgreSQL 14+), Publish writes no row: it emits each
// event as a transactional logical decoding message,
// pg_logical_emit_message(true, prefix, payload), in the caller's
// transaction. PostgreSQL writes it to WAL only, decodes it only if the
// transaction commits, and there is nothing to delete or vacuum afterwards.
// The relay reads it when RELAY_MESSAGE_PREFIX names the same prefix. The
// trade: there is no table to recover from, so messages emitted before the
// relay's slot exists, or while a lost slot is replaced, are gone (see the
// README, "Table or message mode"). Non-transactional messages are never
// emitted (they would be decoded even for a rolled-back transaction).
//
// The payload (version 1; internal/payload defines it for both sides) is,
// big-endian:
//
//	1 byte   version = 1
//	16 bytes id (UUID)
//	8 bytes  occurred-at, int64 microseconds since 1970-01-01 UTC
//	8 bytes  metadata version, int64
//	uvarint length + event type (UTF-8)
//	uvarint length + environment (UTF-8)
//	uvarint count of extra columns, each: uvarint length + name, one kind
//	         byte (0 NULL, 1 value), for a value uvarint length + the value
//	         in PostgreSQL text format (reserved: message mode
//	         carries no extra columns yet, Publish refuses an event that
//	         sets Event.Columns, and the relay reads past any it finds)
//	rest     event context, JSON text, to the end of the payload
//
// The context is last and unframed, so reading a message costs the same
// for 100 bytes and for 5 MiB of context. A relay rejects payload versions
// it does not know and stops, acknowledging nothing.
//
// A [Publisher] is immutable after construction and safe for concurrent use.
package outbox
