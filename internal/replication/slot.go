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

// prepareSlot makes the slot ready to stream and starts the tracker at its
// position. A lost slot is dropped and created again; a created slot's
// snapshot is backfilled before anything is streamed, and so is the whole
// table again when outbox_relay_state says a backfill did not finish. In
// message mode a lost or missing slot is first recorded as a loss of
// events (checkMessageLoss). ctx bounds the queries, hctx the backfill's
// hand-overs.
func (s *Source) prepareSlot(ctx, hctx context.Context, conn *pgconn.PgConn, h *handover) error {
	st, err := readSlot(ctx, s.db, s.cfg.Slot)
	if err != nil {
		return err
	}
	if st.exists && st.plugin != "pgoutput" {
		return retry.Permanent(fmt.Errorf("replication slot %q uses plugin %q, the relay needs pgoutput", s.cfg.Slot, st.plugin))
	}
	if err := s.checkSynced(ctx, conn, &st); err != nil {
		return err
	}
	if s.cfg.MessagePrefix != "" {
		if err := s.checkMessageLoss(ctx, st); err != nil {
			return err
		}
	}
	if st.exists && st.walStatus == "lost" {
		// The WAL the slot needed is gone: events may have been skipped by
		// the stream. Never skip ahead silently: say so loudly, then recover
		// every undelivered row from the outbox table via a new slot.
		s.log.Error().Msg("replication slot is lost (wal_status 'lost'); recreating it and backfilling from the outbox table")
		if s.hooks.SlotLost != nil {
			s.hooks.SlotLost(s.cfg.Slot)
		}
		if err := pglogrepl.DropReplicationSlot(ctx, conn, pgx.Identifier{s.cfg.Slot}.Sanitize(), pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return classify(fmt.Errorf("drop lost slot %q: %w", s.cfg.Slot, err))
		}
		st.exists = false
	}
	if st.exists {
		pending, err := s.backfillPending(ctx)
		if err != nil {
			return err
		}
		if pending {
			// A relay died between creating the slot and delivering its
			// snapshot: deliver every row still in the table (rows the
			// stream also brings collapse in the sink's read path).
			s.log.Warn().Msg("backfill of the slot's snapshot did not finish; delivering the outbox table's rows again")
			n, err := s.backfill(ctx, hctx, h, "", 0)
			if err != nil {
				return fmt.Errorf("resume backfill: %w", err)
			}
			s.log.Info().Int("events", n).Msg("backfill resumed")
		}
		s.matchFailover(ctx, conn, st)
		s.tracker.Start(st.confirmed)
		return nil
	}
	if err := s.setBackfillPending(ctx, true); err != nil {
		return err
	}
	snapshot, consistent, err := createSlot(ctx, conn, s.cfg.Slot, s.wantFailover(conn))
	if err != nil {
		return err
	}
	s.log.Warn().Str("consistent_lsn", pglogrepl.LSN(consistent).String()).
		Msg("replication slot was missing: created it; delivering the rows already in the outbox table from its snapshot")
	if s.hooks.SlotCreated != nil {
		s.hooks.SlotCreated(s.cfg.Slot)
	}
	n, err := s.backfill(ctx, hctx, h, snapshot, consistent)
	if err != nil {
		return fmt.Errorf("backfill from snapshot %s: %w", snapshot, err)
	}
	s.log.Info().Int("events", n).Msg("backfill done")
	if s.hooks.Backfilled != nil {
		s.hooks.Backfilled(n)
	}
	// The new slot's own starting point: confirming it skips no WAL. The
	// snapshot's rows are protected by the backfill marker, not by an LSN.
	// Reset, not Start: after a failover without a failover slot the old
	// primary's positions may lie beyond this server's WAL.
	s.tracker.Reset(consistent)
	return nil
}
