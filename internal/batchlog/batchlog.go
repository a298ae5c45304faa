// Package batchlog records in PostgreSQL which batch ranges the relay is
// inserting into ClickHouse (table outbox_relay_batch, migration 00005), so
// that a relay restarted after a crash rebuilds exactly those batches.
//
// Protocol, per batch: Pending before the INSERT; QueueDone in the same
// implicit transaction as the delete of the batch's outbox rows (package
// cleanup); the LSN is acknowledged after that. On (re)start Load returns
// the ranges the slot may stream again, in stream order. A record costs one
// small UPSERT per batch; the statement also drops the records the slot has
// confirmed past, so the table holds a handful of rows per slot.
package batchlog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/pgerr"
)

// Record is a batch's range as recorded before its INSERT.
type Record struct {
	Range  batch.Range
	Events int
	// RelayedAt is the value of event_log.relayed_at for every row of the
	// batch (seconds): the same on every insert of it.
	RelayedAt time.Time
	// Done: ClickHouse accepted the batch and its outbox rows are deleted;
	// only the acknowledgement may be missing.
	Done bool
}

// DB runs statements (a *pgxpool.Pool satisfies it).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Log is the record of one slot's batches.
type Log struct {
	db   DB
	slot string
	// keep is how long a record outlives the slot's confirmation of it
	// (see KeepConfirmed).
	keep time.Duration
}

// KeepConfirmed returns l keeping each record for d after it was relayed
// even once the slot confirmed past it, while the server names standbys in
// synchronized_standby_slots (PostgreSQL 17+). A failover slot's copy on a
// standby is synchronized some seconds behind the primary's: a promoted
// standby streams again from there, and rebuilds those batches from their
// records.
func (l *Log) KeepConfirmed(d time.Duration) *Log {
	c := *l
	c.keep = d
	return &c
}

// New returns the Log of slot.
func New(db DB, slot string) *Log {
	return &Log{db: db, slot: slot}
}

// Slot is the replication slot the records belong to.
func (l *Log) Slot() string { return l.slot }

// pendingSQL records a range as pending and forgets the ranges whose last
// transaction the slot has confirmed (the stream never brings them again).
const pendingSQL = `WITH forget AS (
	DELETE FROM outbox_relay_batch WHERE slot = $1 AND last_lsn <
		(SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots WHERE slot_name = $1)
		AND (relayed_at < now() - make_interval(secs => $9) OR coalesce(current_setting('synchronized_standby_slots', true), '') = '')
)
INSERT INTO outbox_relay_batch (slot, first_lsn, first_index, last_lsn, last_index, ends_tx, events, relayed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (slot, first_lsn, first_index) DO UPDATE SET last_lsn = EXCLUDED.last_lsn,
	last_index = EXCLUDED.last_index, ends_tx = EXCLUDED.ends_tx, events = EXCLUDED.events,
	relayed_at = EXCLUDED.relayed_at, done = false`

// Pending durably records rec as about to be inserted.
func (l *Log) Pending(ctx context.Context, rec Record) error {
	r := rec.Range
	_, err := l.db.Exec(ctx, pendingSQL, l.slot, int64(r.First.LSN), r.First.Index, int64(r.Last.LSN), r.Last.Index,
		r.EndsTx, rec.Events, rec.RelayedAt, l.keep.Seconds())
	if err != nil {
		return pgerr.Classify(fmt.Errorf("record batch %s as pending in outbox_relay_batch (run `relay migrate`; the relay's role needs SELECT, INSERT, UPDATE, DELETE on it): %w", r.Token(l.slot), err))
	}
	return nil
}

const doneSQL = `UPDATE outbox_relay_batch SET done = true WHERE slot = $1 AND first_lsn = $2 AND first_index = $3`

// QueueDone adds marking r done to b, which the caller runs with the
// delete of r's outbox rows.
func (l *Log) QueueDone(b *pgx.Batch, r batch.Range) {
	b.Queue(doneSQL, l.slot, int64(r.First.LSN), r.First.Index)
}

// Load returns the slot's records in stream order.
func (l *Log) Load(ctx context.Context) ([]Record, error) {
	rows, err := l.db.Query(ctx, `SELECT first_lsn, first_index, last_lsn, last_index, ends_tx, events, relayed_at, done
		FROM outbox_relay_batch WHERE slot = $1 ORDER BY first_lsn, first_index`, l.slot)
	if err != nil {
		return nil, pgerr.Classify(fmt.Errorf("read outbox_relay_batch (run `relay migrate`; the relay's role needs SELECT, INSERT, UPDATE, DELETE on it): %w", err))
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) {
		var (
			rec         Record
			first, last int64
		)
		err := row.Scan(&first, &rec.Range.First.Index, &last, &rec.Range.Last.Index, &rec.Range.EndsTx, &rec.Events, &rec.RelayedAt, &rec.Done)
		rec.Range.First.LSN, rec.Range.Last.LSN = uint64(first), uint64(last)
		rec.RelayedAt = rec.RelayedAt.UTC()
		return rec, err
	})
	if err != nil {
		return nil, pgerr.Classify(fmt.Errorf("read outbox_relay_batch (run `relay migrate`; the relay's role needs SELECT, INSERT, UPDATE, DELETE on it): %w", err))
	}
	return recs, nil
}
