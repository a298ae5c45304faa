package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/retry"
)

// minMessageVersion is the first server_version_num whose pgoutput streams
// logical decoding messages (the messages option).
const minMessageVersion = 140000

// Check verifies what the stream needs from the server and reports every
// problem at once: wal_level, the publication and its table. Problems are
// permanent errors.
func Check(ctx context.Context, db DB, cfg Config) error {
	var walLevel string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return classify(fmt.Errorf("read wal_level: %w", err))
	}
	var errs []error
	if cfg.MessagePrefix != "" {
		var version int
		if err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
			return classify(fmt.Errorf("read server_version_num: %w", err))
		}
		if version < minMessageVersion {
			errs = append(errs, fmt.Errorf("message mode (RELAY_MESSAGE_PREFIX %q) needs PostgreSQL 14 or later to stream logical decoding messages; this server is %d.%d: unset RELAY_MESSAGE_PREFIX or upgrade",
				cfg.MessagePrefix, version/10000, version%10000))
		}
	}
	if walLevel != "logical" {
		errs = append(errs, fmt.Errorf("wal_level is %q: set wal_level = logical in postgresql.conf and restart PostgreSQL", walLevel))
	}
	var pubInsert bool
	err := db.QueryRow(ctx, "SELECT pubinsert FROM pg_publication WHERE pubname = $1", cfg.Publication).Scan(&pubInsert)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		errs = append(errs, fmt.Errorf("publication %q does not exist: run `relay migrate`, or CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert')",
			cfg.Publication, pgx.Identifier{cfg.Publication}.Sanitize(), qualifiedList(cfg.Outboxes)))
	case err != nil:
		return classify(fmt.Errorf("read publication: %w", err))
	default:
		if !pubInsert {
			errs = append(errs, fmt.Errorf("publication %q does not publish inserts", cfg.Publication))
		}
		for _, o := range cfg.Outboxes {
			var n int
			err := db.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
				cfg.Publication, o.Schema, o.Table).Scan(&n)
			if err != nil {
				return classify(fmt.Errorf("read publication tables: %w", err))
			}
			if n == 0 {
				errs = append(errs, fmt.Errorf("publication %q does not include table %s (stream %q): run `relay migrate`, or ALTER PUBLICATION %s ADD TABLE %s",
					cfg.Publication, o.String(), o.Name, pgx.Identifier{cfg.Publication}.Sanitize(), o.Qualified()))
			}
		}
	}
	if len(errs) > 0 {
		return retry.Permanent(errors.Join(errs...))
	}
	return nil
}

// qualifiedList is the tables of outboxes for SQL, comma-separated.
func qualifiedList(outboxes []Outbox) string {
	names := make([]string, len(outboxes))
	for i := range outboxes {
		names[i] = outboxes[i].Qualified()
	}
	return strings.Join(names, ", ")
}
