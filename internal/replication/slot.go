package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/retry"
)

// minMessageVersion is the first server_version_num whose pgoutput streams
// logical decoding messages (the messages option).
const minMessageVersion = 140000

// slotState is a row of pg_replication_slots.
type slotState struct {
	exists    bool
	plugin    string
	active    bool
	confirmed uint64
	walStatus string
	// failover is pg_replication_slots.failover (PostgreSQL 17+; read by
	// checkSynced).
	failover bool
}

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
			cfg.Publication, pgx.Identifier{cfg.Publication}.Sanitize(), pgx.Identifier{cfg.Table}.Sanitize()))
	case err != nil:
		return classify(fmt.Errorf("read publication: %w", err))
	default:
		if !pubInsert {
			errs = append(errs, fmt.Errorf("publication %q does not publish inserts", cfg.Publication))
		}
		var n int
		err := db.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename = $2",
			cfg.Publication, cfg.Table).Scan(&n)
		if err != nil {
			return classify(fmt.Errorf("read publication tables: %w", err))
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("publication %q does not include table %q: ALTER PUBLICATION %s ADD TABLE %s",
				cfg.Publication, cfg.Table, pgx.Identifier{cfg.Publication}.Sanitize(), pgx.Identifier{cfg.Table}.Sanitize()))
		}
	}
	if len(errs) > 0 {
		return retry.Permanent(errors.Join(errs...))
	}
	return nil
}

func readSlot(ctx context.Context, db DB, slot string) (slotState, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var (
		s         slotState
		confirmed *string
		walStatus *string
	)
	err := db.QueryRow(ctx, `SELECT plugin, active, confirmed_flush_lsn::text, wal_status
		FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, slot).
		Scan(&s.plugin, &s.active, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, classify(fmt.Errorf("read slot %q: %w", slot, err))
	}
	s.exists = true
	if walStatus != nil {
		s.walStatus = *walStatus
	}
	if confirmed != nil {
		lsn, err := pglogrepl.ParseLSN(*confirmed)
		if err != nil {
			return s, fmt.Errorf("parse confirmed_flush_lsn %q: %w", *confirmed, err)
		}
		s.confirmed = uint64(lsn)
	}
	return s, nil
}

// createSlot creates the logical slot on the replication connection (a
// failover slot when failover is set) and returns the exported snapshot and
// the consistent point.
func createSlot(ctx context.Context, conn *pgconn.PgConn, slot string, failover bool) (snapshot string, consistent uint64, err error) {
	var res pglogrepl.CreateReplicationSlotResult
	if failover {
		res, err = createFailoverSlot(ctx, conn, slot)
	} else {
		res, err = pglogrepl.CreateReplicationSlot(ctx, conn, pgx.Identifier{slot}.Sanitize(), "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	}
	if err != nil {
		return "", 0, classify(fmt.Errorf("create replication slot %q: %w", slot, err))
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return "", 0, fmt.Errorf("parse consistent point %q: %w", res.ConsistentPoint, err)
	}
	return res.SnapshotName, uint64(lsn), nil
}

// quoteLiteral quotes s as an SQL string literal (for replication commands,
// which take no parameters).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
