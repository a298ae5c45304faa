package status

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/metrics"
)

// DB runs the read-only queries (*pgxpool.Pool satisfies it).
type DB interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SlotSample is one reading of the slot's row in pg_replication_slots,
// joined with its walsender in pg_stat_replication. LSNs are 0 when unknown.
type SlotSample struct {
	At       time.Time
	Exists   bool
	Plugin   string
	Database string
	// InDatabase is true when the slot decodes the connection's database.
	InDatabase bool
	Active     bool
	ActivePID  *int32
	// ConfirmedLSN is confirmed_flush_lsn, RestartLSN restart_lsn.
	ConfirmedLSN, RestartLSN uint64
	// CurrentLSN is the server's current WAL write position.
	CurrentLSN uint64
	// SentLSN is what the active walsender has sent (0 when inactive).
	SentLSN uint64
	// LagBytes is CurrentLSN - ConfirmedLSN, RetainedBytes CurrentLSN - RestartLSN.
	LagBytes, RetainedBytes *int64
	WALStatus               string
	SafeWALSize             *int64
	// ReplyAge is the time since the server last got a standby status
	// update from the active consumer, by the server's clock (nil when
	// inactive or not visible to this role).
	ReplyAge *time.Duration
}

// slotQuery always returns one row: the current WAL position, and the slot
// (NULLs when it is missing). On a standby the receive position stands in.
const slotQuery = `SELECT s.slot_name IS NOT NULL, coalesce(s.plugin, ''), coalesce(s.database::text, ''),
	coalesce(s.database = current_database(), false), coalesce(s.active, false), s.active_pid,
	s.confirmed_flush_lsn::text, s.restart_lsn::text, w.lsn::text, r.sent_lsn::text,
	(w.lsn - s.confirmed_flush_lsn)::bigint, (w.lsn - s.restart_lsn)::bigint,
	coalesce(s.wal_status, ''), s.safe_wal_size,
	extract(epoch FROM now() - r.reply_time)::float8
FROM (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END AS lsn) w
LEFT JOIN pg_replication_slots s ON s.slot_name = $1
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid`

// ReadSlot reads the slot's row.
func ReadSlot(ctx context.Context, db DB, slot string) (SlotSample, error) {
	s := SlotSample{At: time.Now()}
	var confirmed, restart, current, sent *string
	var replyAge *float64
	err := db.QueryRow(ctx, slotQuery, slot).Scan(&s.Exists, &s.Plugin, &s.Database, &s.InDatabase, &s.Active, &s.ActivePID,
		&confirmed, &restart, &current, &sent, &s.LagBytes, &s.RetainedBytes, &s.WALStatus, &s.SafeWALSize, &replyAge)
	if err != nil {
		return s, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	for _, p := range []struct {
		text *string
		dst  *uint64
	}{{confirmed, &s.ConfirmedLSN}, {restart, &s.RestartLSN}, {current, &s.CurrentLSN}, {sent, &s.SentLSN}} {
		if p.text == nil {
			continue
		}
		lsn, err := pglogrepl.ParseLSN(*p.text)
		if err != nil {
			return s, fmt.Errorf("parse LSN %q: %w", *p.text, err)
		}
		*p.dst = uint64(lsn)
	}
	if replyAge != nil {
		d := time.Duration(*replyAge * float64(time.Second))
		s.ReplyAge = &d
	}
	return s, nil
}

// PollSlot reads the slot every interval until ctx ends and hands each
// sample to every observer. While the slot is missing or inactive (the relay
// is creating it or connecting) it reads every second at most, so the gauges
// settle quickly after a start. A failed read is logged (once per streak of
// failures) and polling goes on: the gauges are a view, not the pipeline.
// It returns nil when ctx ends.
func PollSlot(ctx context.Context, db DB, slot string, every time.Duration, log zerolog.Logger, observers ...func(SlotSample)) error {
	t := time.NewTimer(0)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, every)
		s, err := ReadSlot(qctx, db, slot)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			log.Warn().Err(err).Msg("slot gauges: reading the slot failed; retrying")
		case err == nil && failing:
			log.Info().Msg("slot gauges: reading the slot works again")
		}
		failing = err != nil
		next := every
		if err == nil {
			for _, o := range observers {
				o(s)
			}
			if !s.Exists || !s.Active {
				next = min(every, time.Second)
			}
		}
		t.Reset(next)
	}
}

// PollInterval is how often `relay run` polls the slot: every status
// interval, between 1s and 15s.
func PollInterval(statusInterval time.Duration) time.Duration {
	return min(max(statusInterval, time.Second), 15*time.Second)
}

// SlotGauges returns an observer that sets the slot gauges of m:
// outbox_relay_slot_lag_bytes, outbox_relay_retained_wal_bytes and
// outbox_relay_wal_status. A relay creates a missing slot as it starts, so
// "missing" is reported only once the slot disappeared after being seen,
// or was missing on two reads in a row; the lag gauges then keep their last
// value.
func SlotGauges(m *metrics.Metrics) func(SlotSample) {
	seen, missingBefore := false, false
	return func(s SlotSample) {
		if !s.Exists {
			if seen || missingBefore {
				m.SetWALStatus(metrics.WALStatusMissing)
			}
			missingBefore = true
			return
		}
		seen, missingBefore = true, false
		m.SetWALStatus(s.WALStatus)
		if s.LagBytes != nil {
			m.SlotLagBytes.Set(float64(*s.LagBytes))
		}
		if s.RetainedBytes != nil {
			m.RetainedWALBytes.Set(float64(*s.RetainedBytes))
		}
	}
}
