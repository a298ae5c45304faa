package api

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The demo's own schema, applied by `relay api` at start (EnsureSchema),
// never by `relay migrate`: the product creates only the relay's objects.
// Databases migrated before that change got the same objects from the
// migrations 00002 and 00006, which EnsureSchema finds and keeps.

// usersDDL is the business table of "create user": a row here and its
// user_created event in outbox_event are written in one transaction.
const usersDDL = `CREATE TABLE IF NOT EXISTS users (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text        NOT NULL UNIQUE,
    first_name text        NOT NULL,
    last_name  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)`

// userIDDDL adds the outbox's extra column the demo stamps the created
// user's id in; the relay carries it to event_log.user_id (README, Adding
// a column), so ClickHouse filters and joins on it without parsing
// event_context. Other events leave it NULL.
const userIDDDL = `ALTER TABLE outbox_event ADD COLUMN IF NOT EXISTS user_id uuid`

// schemaLock serializes demo APIs starting at once (CREATE TABLE IF NOT
// EXISTS races on the catalog otherwise).
const schemaLock = `SELECT pg_advisory_xact_lock(hashtext('outbox-relay demo schema'))`

// Beginner starts a transaction; *pgxpool.Pool and *pgx.Conn are ones.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// EnsureSchema creates the demo's users table and outbox_event.user_id
// where they are missing, in one transaction; it changes nothing where
// they exist. outbox_event itself is the relay's: a database without it
// has not been through `relay migrate`, which EnsureSchema says.
func EnsureSchema(ctx context.Context, db Beginner) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, schemaLock); err != nil {
			return fmt.Errorf("demo schema lock: %w", err)
		}
		if err := ensureUsers(ctx, tx); err != nil {
			return err
		}
		return ensureUserID(ctx, tx)
	})
}

func ensureUsers(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, usersDDL); err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	return nil
}

// ensureUserID alters outbox_event only when the column is missing: an
// ALTER TABLE waits for every transaction on the table, even when IF NOT
// EXISTS then makes it a no-op.
func ensureUserID(ctx context.Context, tx pgx.Tx) error {
	var table, column bool
	err := tx.QueryRow(ctx, `SELECT to_regclass('outbox_event') IS NOT NULL,
		EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('outbox_event') AND attname = 'user_id' AND NOT attisdropped)`).Scan(&table, &column)
	switch {
	case err != nil:
		return fmt.Errorf("look up outbox_event.user_id: %w", err)
	case !table:
		return fmt.Errorf("table outbox_event does not exist: run `relay migrate` first")
	case column:
		return nil
	}
	if _, err := tx.Exec(ctx, userIDDDL); err != nil {
		return fmt.Errorf("add outbox_event.user_id: %w", err)
	}
	return nil
}
