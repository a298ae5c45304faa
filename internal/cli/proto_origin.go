package cli

// PROTOTYPE (issue 23 item 4, measurement only): RELAY_PROTO_DELETE_ORIGIN=1
// runs the deleter on its own one-connection pool whose session has a
// replication origin, and the stream asks pgoutput for origin 'none'
// (PostgreSQL 16+), so the relay's DELETE transactions are skipped early in
// decoding.

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func protoDeleteOrigin() bool { return os.Getenv("RELAY_PROTO_DELETE_ORIGIN") == "1" }

func protoOriginPool(ctx context.Context, url, slot string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("origin pool: %w", err)
	}
	pc.MaxConns = 1
	name := "relay_" + slot
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, `SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT FROM pg_replication_origin WHERE roname = $1)`, name); err != nil {
			return fmt.Errorf("create origin: %w", err)
		}
		if _, err := c.Exec(ctx, `SELECT pg_replication_origin_session_setup($1)`, name); err != nil {
			return fmt.Errorf("origin session setup: %w", err)
		}
		return nil
	}
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("origin pool: %w", err)
	}
	return p, nil
}
