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
// Extra columns travel too: declare them with their types, read from the
// outbox table, and set them in [Event.Columns] as in table mode:
//
//	cols, err := outbox.ColumnTypes(ctx, pool) // the outbox table's extra columns
//	pub, err := outbox.NewPublisher("production",
//		outbox.WithMessages("outbox"), outbox.WithColumnTypes(cols...))
//
// Every message then carries every declared column, as a row would: the
// value an event sets, else the column's DEFAULT (evaluated in the
// caller's transaction, as an INSERT does), else NULL. PostgreSQL itself
// encodes the values in the statement Publish sends (the column's type and
// modifier applied, then the type's send function, which is what pgoutput
// sends for a table row), so a value published as a message and the same
// value inserted as a row arrive in ClickHouse identical, and the relay's
// schema evolution (RELAY_SCHEMA_EVOLUTION) treats both alike. What an
// INSERT would refuse and a message cannot check is checked before
// sending: a NULL (or an omitted column without default) in a NOT NULL
// column is [ErrNotNull]. Build a new Publisher after changing the
// table's columns; a publisher declares the columns as they were when it
// read them.
//
// The payload (internal/payload defines it for both sides) is,
// big-endian:
//
//	1 byte   version: 1 without extra columns, 2 with them
//	16 bytes id (UUID)
//	8 bytes  occurred-at, int64 microseconds since 1970-01-01 UTC
//	8 bytes  metadata version, int64
//	uvarint length + event type (UTF-8)
//	uvarint length + environment (UTF-8)
//	version 1: one byte 0 (no extra columns)
//	version 2: uvarint count n of extra columns, each: uvarint length +
//	         name, uint32 type OID, int32 type modifier, one flags byte
//	         (bit 0: NOT NULL); then the values as PostgreSQL's
//	         record_send writes ROW(v1, …, vn): int32 n, each value's
//	         int32 type OID, int32 length (-1 NULL) and binary value
//	rest     event context, JSON text, to the end of the payload
//
// The context is last and unframed, so reading a message costs the same
// for 100 bytes and for 5 MiB of context. A relay rejects payload versions
// it does not know and stops, acknowledging nothing; a publisher writes
// version 1 while it declares no typed columns, which relays from before
// version 2 read.
//
// A [Publisher] is immutable after construction and safe for concurrent use.
package outbox
