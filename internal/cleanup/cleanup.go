// Package cleanup deletes delivered events from the outbox table.
//
// It runs only after the sink accepted a batch and its position was
// acknowledged, so the outbox table always holds exactly the events not yet
// known to be delivered. Deleting is idempotent: an id already gone is
// simply not found. The publication publishes inserts only, so these DELETEs
// are never decoded by the relay's own slot.
package cleanup

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// chunk bounds the ids in one statement (the array parameter's size).
const chunk = 20000

// Execer runs a statement (a *pgxpool.Pool satisfies it).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Deleter removes rows by id.
type Deleter struct {
	db  Execer
	sql string
}

// New returns a Deleter for table.
func New(db Execer, table string) *Deleter {
	return &Deleter{db: db, sql: fmt.Sprintf("DELETE FROM %s WHERE id = ANY($1::uuid[])", pgx.Identifier{table}.Sanitize())}
}

// Delete removes the rows with the given ids, one statement per chunk, and
// returns how many rows were deleted.
func (d *Deleter) Delete(ctx context.Context, ids [][16]byte) (int64, error) {
	var n int64
	for len(ids) > 0 {
		part := ids[:min(len(ids), chunk)]
		ids = ids[len(part):]
		tag, err := d.db.Exec(ctx, d.sql, part)
		if err != nil {
			return n, fmt.Errorf("delete delivered rows: %w", err)
		}
		n += tag.RowsAffected()
	}
	return n, nil
}
