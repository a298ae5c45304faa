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
	"github.com/outbox-relay/relay/internal/event"
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

// Table is one stream's outbox table: where delivered rows are deleted,
// by which key.
type Table struct {
	// Schema and Name place the table; Key is its identity column and
	// KeyType that column's type as format_type spells it ("uuid" keys
	// are the events' IDs, the others their Key text).
	Schema, Name, Key, KeyType string
}

// Deleter removes rows by key.
type Deleter struct {
	db     BatchSender
	mark   Marker
	tables []table
}

type table struct {
	sql  string
	uuid bool
}

// New returns a Deleter for tables, in stream order (event.Row.Stream
// indexes them); mark may be nil when no range is ever passed to Delete.
func New(db BatchSender, tables []Table, mark Marker) *Deleter {
	d := &Deleter{db: db, mark: mark}
	for _, t := range tables {
		name, key := pgx.Identifier{t.Schema, t.Name}.Sanitize(), pgx.Identifier{t.Key}.Sanitize()
		if t.KeyType == "uuid" {
			d.tables = append(d.tables, table{uuid: true, sql: fmt.Sprintf("DELETE FROM %s WHERE %s = ANY($1::uuid[])", name, key)})
			continue
		}
		// The keys travel as text and are cast to the column's type, so
		// that the primary key's index serves the lookup.
		d.tables = append(d.tables, table{sql: fmt.Sprintf("DELETE FROM %s WHERE %s = ANY($1::text[]::%s[])", name, key, t.KeyType)})
	}
	return d
}

// Delete removes the given rows (one statement per table and chunk) and,
// when done is not nil, marks that range done, all in one transaction; it
// returns how many rows were deleted. A missing privilege or table is
// permanent (pgerr): retrying cannot fix it.
func (d *Deleter) Delete(ctx context.Context, rows []event.Row, done *batch.Range) (int64, error) {
	b := &pgx.Batch{}
	d.queue(b, rows)
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

// queue queues the deletes of rows, grouped by table, in chunks.
func (d *Deleter) queue(b *pgx.Batch, rows []event.Row) {
	single := true
	for i := range rows {
		if rows[i].Stream != 0 {
			single = false
			break
		}
	}
	for stream, t := range d.tables {
		var ids [][16]byte
		var keys []string
		for i := range rows {
			switch r := &rows[i]; {
			case !single && int(r.Stream) != stream:
			case t.uuid:
				ids = append(ids, r.ID)
			default:
				keys = append(keys, r.Key)
			}
		}
		for len(ids) > 0 {
			part := ids[:min(len(ids), chunk)]
			ids = ids[len(part):]
			b.Queue(t.sql, uuids(part))
		}
		for len(keys) > 0 {
			part := keys[:min(len(keys), chunk)]
			keys = keys[len(part):]
			b.Queue(t.sql, part)
		}
		if single {
			return
		}
	}
}
