// Package deletion deletes delivered events from the outbox table.
//
// It runs only after the sink accepted a batch, and before its position is
// acknowledged, so the outbox table always holds every event not yet known
// to be delivered. Deleting is idempotent: an id already gone is simply not
// found. The publication publishes inserts only, so these DELETEs are never
// decoded by the relay's own slot.
//
// When the batch has a recorded range (package batchlog), the range is
// marked done in the same implicit transaction as the delete: a restarted
// relay that finds it done knows the rows are in ClickHouse and gone from
// the outbox, and does not insert them again.
package deletion

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/pgerr"
)

// chunk bounds the ids in one statement (the array parameter's size).
const chunk = 20000

// BatchSender runs a batch of statements in one implicit transaction (a
// *pgxpool.Pool satisfies it).
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Marker queues marking a recorded range done (a *batchlog.Log).
type Marker interface {
	QueueDone(b *pgx.Batch, r batch.Range)
}

// Deleter removes rows by id.
type Deleter struct {
	db   BatchSender
	mark Marker
	sql  string
}

// New returns a Deleter for table; mark may be nil when no range is ever
// passed to Delete.
func New(db BatchSender, table string, mark Marker) *Deleter {
	return &Deleter{db: db, mark: mark, sql: fmt.Sprintf("DELETE FROM %s WHERE id = ANY($1::uuid[])", pgx.Identifier{table}.Sanitize())}
}

// Delete removes the rows with the given ids (one statement per chunk) and,
// when done is not nil, marks that range done, all in one transaction; it
// returns how many rows were deleted. A missing privilege or table is
// permanent (pgerr): retrying cannot fix it.
func (d *Deleter) Delete(ctx context.Context, ids [][16]byte, done *batch.Range) (int64, error) {
	b := &pgx.Batch{}
	for len(ids) > 0 {
		part := ids[:min(len(ids), chunk)]
		ids = ids[len(part):]
		b.Queue(d.sql, uuids(part))
	}
	if done != nil {
		d.mark.QueueDone(b, *done)
	}
	if b.Len() == 0 {
		return 0, nil
	}
	res := d.db.SendBatch(ctx, b)
	var n int64
	for range b.Len() {
		tag, err := res.Exec()
		if err != nil {
			_ = res.Close()
			return n, pgerr.Classify(fmt.Errorf("delete delivered rows: %w", err))
		}
		if tag.Delete() {
			n += tag.RowsAffected()
		}
	}
	if err := res.Close(); err != nil {
		return n, pgerr.Classify(fmt.Errorf("delete delivered rows: %w", err))
	}
	return n, nil
}
