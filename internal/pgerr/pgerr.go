// Package pgerr classifies PostgreSQL errors, once for every part of the
// relay that talks to PostgreSQL (the stream, the batch log, the deletes,
// the dead letters): a problem only an operator can fix stops the relay
// with the same message wherever it occurs; anything else is retried.
package pgerr

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/retry"
)

// Classify wraps err so that callers tell retryable from fatal with
// retry.IsPermanent: a missing privilege, object or database, failed
// authentication and a server not set up for the relay are permanent;
// network errors, timeouts and a restarting server (no *pgconn.PgError,
// or another SQLSTATE) are retried. A permission error says what to grant.
func Classify(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == pgerrcode.InsufficientPrivilege:
		return retry.Permanent(fmt.Errorf("%w (grant the relay's role what the README's \"Least-privilege role\" lists)", err))
	case pgErr.Code == pgerrcode.InvalidCatalogName, pgErr.Code == pgerrcode.ObjectNotInPrerequisiteState,
		pgerrcode.IsInvalidAuthorizationSpecification(pgErr.Code),
		pgerrcode.IsSyntaxErrororAccessRuleViolation(pgErr.Code):
		return retry.Permanent(err)
	}
	return err
}
