package replication

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/retry"
)

// SQLSTATEs that matter to the stream.
const (
	sqlstateObjectInUse        = "55006" // replication slot is active for another PID
	sqlstateNotInPrerequisite  = "55000" // e.g. slot invalidated, wal_level too low
	sqlstateUndefinedObject    = "42704" // e.g. publication does not exist
	sqlstateInsufficientPriv   = "42501"
	sqlstateInvalidCatalogName = "3D000"
)

// ErrSlotInUse means another process streams from the slot: this relay is a
// standby and should retry.
var ErrSlotInUse = errors.New("replication slot is active in another process")

// ErrSlotLost means the slot can no longer stream (WAL removed or slot
// invalidated): the undelivered rows must be recovered from the table.
var ErrSlotLost = errors.New("replication slot is lost")

// classify wraps err so that callers can tell retryable from fatal with
// retry.IsPermanent and errors.Is. Network errors and server restarts are
// retryable; configuration and permission problems are permanent.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err // I/O, timeouts, closed connections: retry
	}
	switch {
	case pgErr.Code == sqlstateObjectInUse:
		return fmt.Errorf("%w: %w", ErrSlotInUse, err)
	case pgErr.Code == sqlstateNotInPrerequisite && isSlotLost(pgErr):
		// Retryable: the next session finds wal_status 'lost', recreates
		// the slot and backfills from the outbox table.
		return fmt.Errorf("%w: %w", ErrSlotLost, err)
	case pgErr.Code == sqlstateUndefinedObject,
		pgErr.Code == sqlstateInsufficientPriv,
		pgErr.Code == sqlstateInvalidCatalogName,
		pgErr.Code == sqlstateNotInPrerequisite,
		strings.HasPrefix(pgErr.Code, "28"), // invalid authorization
		strings.HasPrefix(pgErr.Code, "42"): // syntax or access rule violation
		return retry.Permanent(err)
	}
	return err
}

func isSlotLost(e *pgconn.PgError) bool {
	// "can no longer get changes from replication slot" (PG 13+) or
	// "requested WAL segment ... has already been removed".
	return strings.Contains(e.Message, "can no longer get changes") ||
		strings.Contains(e.Message, "has already been removed") ||
		strings.Contains(e.Detail, "invalidated")
}
