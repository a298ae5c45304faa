// Package standby makes the relay's own writes in PostgreSQL durable on the
// physical standbys a failover may promote before the relay acts on them.
//
// With a PostgreSQL 17 failover slot, the primary sends the relay a change
// only once every standby named in synchronized_standby_slots has its WAL,
// and the standbys keep a synchronized copy of the slot. The relay's own
// statements are not covered: a batch record (package batchlog) or the
// delete that marks a batch done could die with the primary after
// ClickHouse got the batch, and the promoted standby would then stream the
// batch again without its record, cut it anew and repeat rows. A Waiter
// closes that gap: after each write it returns only once the standbys named
// in synchronized_standby_slots have flushed the WAL written so far (their
// physical slots' restart_lsn, the position PostgreSQL itself waits on), so
//   - a batch is inserted only after its record is on the standbys, and
//   - its position is acknowledged only after its delete is.
//
// With no synchronized_standby_slots a write costs one more query and never
// waits; before PostgreSQL 17 only the first does. While a named standby is down the
// relay waits, as PostgreSQL holds the failover slot back then anyway.
package standby

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is the connection pool (*pgxpool.Pool satisfies it).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Polling of the standbys' position: from minPoll, doubling up to maxPoll.
const (
	minPoll = time.Millisecond
	maxPoll = 20 * time.Millisecond
)

// Waiter is a DB whose writes (Exec, SendBatch) return once the
// synchronized standbys have them; reads pass through.
type Waiter struct {
	db DB
	// older is set once the server turned out to predate
	// synchronized_standby_slots (PostgreSQL 16 and older): writes then
	// pass through without the extra query.
	older atomic.Bool
}

// New wraps db.
func New(db DB) *Waiter { return &Waiter{db: db} }

// Exec runs sql, then waits for the standbys.
func (w *Waiter) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := w.db.Exec(ctx, sql, args...)
	if err != nil {
		return tag, err
	}
	return tag, w.Wait(ctx)
}

// Query passes through.
func (w *Waiter) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return w.db.Query(ctx, sql, args...)
}

// SendBatch sends b; closing its results waits for the standbys.
func (w *Waiter) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return &results{BatchResults: w.db.SendBatch(ctx, b), w: w, ctx: ctx}
}

type results struct {
	pgx.BatchResults
	w   *Waiter
	ctx context.Context
}

// Close ends the batch's implicit transaction, then waits for the standbys.
func (r *results) Close() error {
	if err := r.BatchResults.Close(); err != nil {
		return err
	}
	return r.w.Wait(r.ctx)
}

// Wait returns once every slot named in synchronized_standby_slots has
// flushed the WAL inserted so far; at once when none is named. The insert
// position, not the write position: with synchronous_commit = off a commit
// returns before its record is written.
func (w *Waiter) Wait(ctx context.Context) error {
	if w.older.Load() {
		return nil
	}
	var (
		lsn     string
		setting *string
	)
	err := w.db.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text, current_setting('synchronized_standby_slots', true)`).Scan(&lsn, &setting)
	if err != nil {
		return fmt.Errorf("read the WAL position for the standbys: %w", err)
	}
	if setting == nil {
		w.older.Store(true)
		return nil
	}
	slots := SlotList(*setting)
	if len(slots) == 0 {
		return nil
	}
	poll := minPoll
	for {
		var have bool
		err := w.db.QueryRow(ctx, `SELECT coalesce(bool_and(coalesce(s.restart_lsn >= $1::pg_lsn, false)), true)
			FROM unnest($2::text[]) AS n(name) LEFT JOIN pg_replication_slots s ON s.slot_name = n.name`, lsn, slots).Scan(&have)
		if err != nil {
			return fmt.Errorf("read the standbys' position (synchronized_standby_slots %s): %w", *setting, err)
		}
		if have {
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for the standbys of synchronized_standby_slots (%s) to flush %s: %w", *setting, lsn, ctx.Err())
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
	}
}

// SlotList splits a slot list setting such as synchronized_standby_slots
// ("a, b", names possibly double-quoted).
func SlotList(s string) []string {
	out := []string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if len(part) >= 2 && part[0] == '"' && part[len(part)-1] == '"' {
			part = strings.ReplaceAll(part[1:len(part)-1], `""`, `"`)
		}
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}
