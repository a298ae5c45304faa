package replication

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// minFailoverMajor is the first PostgreSQL major version with failover
// slots: a logical slot created with FAILOVER is synchronized to physical
// standbys that run with sync_replication_slots = on, so a promoted standby
// has it at a position the relay confirmed.
const minFailoverMajor = 17

// serverMajor is the major version the server reported at connection
// start (server_version, e.g. "17.12 (Debian 17.12-1)"); 0 when unknown.
func serverMajor(conn *pgconn.PgConn) int {
	return parseMajor(conn.ParameterStatus("server_version"))
}

// parseMajor is the leading number of a server_version.
func parseMajor(v string) int {
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	major, err := strconv.Atoi(v)
	if err != nil {
		return 0
	}
	return major
}

// wantFailover says whether the slot should be a failover slot on the
// server of conn: when configured and the server has them.
func (s *Source) wantFailover(conn *pgconn.PgConn) bool {
	return s.cfg.SlotFailover && serverMajor(conn) >= minFailoverMajor
}

// createFailoverSlot is createSlot's command for a failover slot, in the
// option-list form of PostgreSQL 15+ (pglogrepl has no FAILOVER option).
func createFailoverSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (pglogrepl.CreateReplicationSlotResult, error) {
	sql := "CREATE_REPLICATION_SLOT " + pgx.Identifier{slot}.Sanitize() + " LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)"
	return pglogrepl.ParseCreateReplicationSlot(conn.Exec(ctx, sql))
}

// matchFailover makes an existing slot's failover flag (st.failover, read
// by checkSynced) what the configuration asks, on PostgreSQL 17+ (a slot
// made by an older relay, or with RELAY_SLOT_FAILOVER=false). A failure is
// logged, not returned: the flag changes what a failover keeps, not what the
// stream delivers.
func (s *Source) matchFailover(ctx context.Context, conn *pgconn.PgConn, st slotState) {
	if serverMajor(conn) < minFailoverMajor {
		if s.cfg.SlotFailover {
			s.log.Debug().Msg("failover slots need PostgreSQL 17 or later: the slot is not kept across a primary failover")
		}
		return
	}
	if st.failover == s.cfg.SlotFailover {
		return
	}
	sql := fmt.Sprintf("ALTER_REPLICATION_SLOT %s (FAILOVER %t)", pgx.Identifier{s.cfg.Slot}.Sanitize(), s.cfg.SlotFailover)
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		s.log.Warn().Err(err).Bool("failover", s.cfg.SlotFailover).Msg("could not change the slot's failover flag (RELAY_SLOT_FAILOVER)")
		return
	}
	s.log.Info().Bool("failover", s.cfg.SlotFailover).Msg("set the slot's failover flag (RELAY_SLOT_FAILOVER)")
}

// checkSynced reads, on PostgreSQL 17+, the slot's failover columns into st
// before an existing slot is used. A slot the server marks synced is a
// failover slot a standby copied from its primary: after a promotion the
// relay streams on from it (logged, so a failover shows). A slot the server
// invalidated (invalidation_reason, e.g. rows_removed on a standby without
// hot_standby_feedback) can never stream again: it is treated like a lost
// slot (st.walStatus = "lost"), so prepareSlot says so, recreates it and
// backfills from the outbox table.
func (s *Source) checkSynced(ctx context.Context, conn *pgconn.PgConn, st *slotState) error {
	if !st.exists || st.walStatus == "lost" || serverMajor(conn) < minFailoverMajor {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var (
		synced  bool
		invalid *string
	)
	err := s.db.QueryRow(ctx, `SELECT synced, failover, invalidation_reason FROM pg_replication_slots
		WHERE slot_name = $1 AND database = current_database()`, s.cfg.Slot).Scan(&synced, &st.failover, &invalid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return classify(fmt.Errorf("read the failover state of slot %q: %w", s.cfg.Slot, err))
	}
	if invalid != nil {
		s.log.Error().Str("invalidation_reason", *invalid).Bool("synced", synced).
			Msg("replication slot is invalidated and cannot stream; treating it as lost")
		st.walStatus = "lost"
		return nil
	}
	if synced {
		s.log.Info().Str("confirmed_lsn", pglogrepl.LSN(st.confirmed).String()).Bool("failover", st.failover).
			Msg("resuming from a failover slot synchronized from the former primary")
	}
	return nil
}
