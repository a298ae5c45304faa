package replication

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/outbox-relay/relay/internal/pgerr"
)

// ErrSlotInUse means another process streams from the slot: this relay is a
// standby and should retry.
var ErrSlotInUse = errors.New("replication slot is active in another process")

// ErrSlotLost means the slot can no longer stream (WAL removed or slot
// invalidated): the undelivered rows must be recovered from the table.
var ErrSlotLost = errors.New("replication slot is lost")

// classify adds the stream's own cases to pgerr.Classify: another process
// streaming from the slot (a standby relay: retry) and a lost slot (the
// next session recreates it and backfills: retry).
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err // nil, I/O, timeouts, closed connections: retry
	}
	switch {
	case pgErr.Code == pgerrcode.ObjectInUse:
		return fmt.Errorf("%w: %w", ErrSlotInUse, err)
	case pgErr.Code == pgerrcode.ObjectNotInPrerequisiteState && isSlotLost(pgErr):
		return fmt.Errorf("%w: %w", ErrSlotLost, err)
	}
	return pgerr.Classify(err)
}

func isSlotLost(e *pgconn.PgError) bool {
	// "can no longer get changes from replication slot" (PG 13+) or
	// "requested WAL segment ... has already been removed".
	return strings.Contains(e.Message, "can no longer get changes") ||
		strings.Contains(e.Message, "has already been removed") ||
		strings.Contains(e.Detail, "invalidated")
}
