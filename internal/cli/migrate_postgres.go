package cli

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/retry"
)

// migratePostgres is relay migrate's PostgreSQL part: the relay's state
// tables, outbox_event when a stream uses it, and the publication of every
// stream's outbox table, each described and checked as relay run does
// (replication.Describe, SharedTables) before anything is published. A
// problem with the streams' tables is a configuration error (exit 2).
func migratePostgres(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	streams := cfg.Streams()
	createDefault := slices.ContainsFunc(streams, func(s config.Stream) bool { return s.Outbox == config.DefaultOutboxTable })
	describe := func(ctx context.Context, conn *pgx.Conn) ([]migrate.Table, error) {
		outboxes, err := replication.Describe(ctx, conn, streams)
		if err == nil {
			err = replication.SharedTables(streams, outboxes)
		}
		if err != nil {
			return nil, err
		}
		tables := make([]migrate.Table, len(outboxes))
		for i, o := range outboxes {
			tables[i] = migrate.Table{Schema: o.Schema, Name: o.Table}
		}
		return tables, nil
	}
	err := migrate.Postgres(ctx, cfg.DatabaseURL, cfg.Publication, createDefault, describe, log)
	if retry.IsPermanent(err) {
		return usageError(err)
	}
	return err
}
