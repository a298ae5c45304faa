package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/config"
)

// chWriter is the baselines' ClickHouse insert: one PrepareBatch with an
// explicit column list (18.16 needs it) and one columnar Append per column,
// the same technique the relay's sink uses.
type chWriter struct {
	conn  driver.Conn
	dt64  bool
	query string
}

func newCHWriter(conn driver.Conn, dt64 bool) *chWriter {
	cols := "event_id, event_type, event_date_time, event_date_time_us, environment, event_context, metadata_version, commit_lsn"
	if dt64 {
		cols = "event_id, event_type, event_date_time, environment, event_context, metadata_version, commit_lsn"
	}
	return &chWriter{conn: conn, dt64: dt64, query: fmt.Sprintf("INSERT INTO %s (%s)", config.DefaultClickHouseTable, cols)}
}

// Write inserts rows in one INSERT.
func (w *chWriter) Write(ctx context.Context, rows []Row) error {
	b, err := w.conn.PrepareBatch(ctx, w.query)
	if err != nil {
		return fmt.Errorf("clickhouse prepare insert: %w", err)
	}
	defer func() { _ = b.Abort() }()
	cols := w.columns(rows)
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("clickhouse append column %d: %w", i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse insert: %w", err)
	}
	return nil
}

func (w *chWriter) columns(rows []Row) []any {
	n := len(rows)
	ids, types, envs := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	ctxs, versions, lsns := make([][]byte, n), make([]uint64, n), make([]uint64, n)
	times, micros := make([]time.Time, n), make([]uint32, n)
	for i := range rows {
		r := &rows[i]
		ids[i], types[i], envs[i], ctxs[i], versions[i] = r.ID, r.Type, r.Environment, r.Context, uint64(r.Seq)
		if w.dt64 {
			times[i] = r.OccurredAt
		} else {
			times[i], micros[i] = r.OccurredAt.Truncate(time.Second), uint32(r.OccurredAt.Nanosecond()/1000)
		}
	}
	if w.dt64 {
		return []any{ids, types, times, envs, ctxs, versions, lsns}
	}
	return []any{ids, types, times, micros, envs, ctxs, versions, lsns}
}
