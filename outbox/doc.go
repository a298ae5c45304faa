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
//     the [Execer] it is given. If Publish returns an error the statement may
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
// A [Publisher] is immutable after construction and safe for concurrent use.
package outbox
