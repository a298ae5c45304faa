package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
)

// backfill hands over every row of the outbox table as seen by the slot's
// snapshot, then a Commit at the consistent point: rows committed before it
// are in the snapshot, rows committed after it come from the stream. An
// empty snapshot reads the table as it is now (a resumed backfill). ctx
// bounds the reading, hctx the hand-overs (see Run).
func (s *Source) backfill(ctx, hctx context.Context, h *handover, snapshot string, consistent uint64) (int, error) {
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, classify(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if snapshot != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(snapshot)); err != nil {
			return 0, classify(fmt.Errorf("import snapshot: %w", err))
		}
	}
	n := 0
	for i := range s.cfg.Outboxes {
		m, err := s.backfillTable(ctx, hctx, tx, h, &s.cfg.Outboxes[i], consistent)
		n += m
		if err != nil {
			return n, err
		}
	}
	done := func(ctx context.Context) error { return s.setBackfillPending(ctx, false) }
	// The backfill's Commit is handed over at once: it is not streamed, so
	// no caught-up read (gather) follows to do it.
	if err := h.put(hctx, Item{Commit: true, EndLSN: consistent, AfterConfirm: done, Backfill: true, At: time.Now()}); err != nil {
		return n, err
	}
	return n, h.send(hctx)
}

// backfillTable hands over the rows of one stream's outbox table in the
// snapshot of tx.
func (s *Source) backfillTable(ctx, hctx context.Context, tx pgx.Tx, h *handover, o *Outbox, consistent uint64) (int, error) {
	// The published columns, in the binary format, as the stream gets
	// them: one decoding for both (a value the sink cannot store is
	// dead-lettered either way, instead of failing a scan here).
	cols, err := s.publishedColumns(ctx, tx, o)
	if err != nil {
		return 0, err
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s ORDER BY %s`, cols, o.Qualified(), o.eventTimeOrder),
		pgx.QueryResultFormats{pgx.BinaryFormatCode})
	if err != nil {
		return 0, classify(fmt.Errorf("read outbox table %s: %w", o, err))
	}
	defer rows.Close()
	rel, formats, err := s.rowRelation(ctx, rows.FieldDescriptions(), o)
	if err != nil {
		return 0, err
	}
	types := pgtype.NewMap()
	n := 0
	for rows.Next() {
		ev := event.Event{CommitLSN: consistent}
		if err := rel.decodeRow(rows.RawValues(), formats, &ev, types); err != nil {
			return n, retry.Permanent(fmt.Errorf("decode a row of %s: %w", o, err))
		}
		n++
		if err := h.take(hctx, &ev); err != nil {
			return n, err
		}
		if err := h.put(hctx, Item{Event: ev, Backfill: true, At: time.Now()}); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, classify(fmt.Errorf("read outbox table %s: %w", o, err))
	}
	return n, nil
}

// rowRelation is the outbox table's shape as a query returns it, mapped
// like the stream's RELATION message (extra columns included), and the
// columns' result formats.
func (s *Source) rowRelation(ctx context.Context, fds []pgconn.FieldDescription, o *Outbox) (*relation, []int16, error) {
	m := pglogrepl.RelationMessage{Namespace: o.Schema, RelationName: o.Table}
	formats := make([]int16, len(fds))
	for i, fd := range fds {
		m.RelationID = fd.TableOID
		m.Columns = append(m.Columns, &pglogrepl.RelationMessageColumn{Name: fd.Name, DataType: fd.DataTypeOID, TypeModifier: fd.TypeModifier})
		formats[i] = fd.Format
	}
	rel, err := s.newRelation(ctx, &m, o)
	if err != nil {
		return nil, nil, err
	}
	return rel, formats, nil
}

// backfillPending reads the slot's marker in outbox_relay_state.
func (s *Source) backfillPending(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var pending bool
	err := s.db.QueryRow(ctx, "SELECT backfill_pending FROM outbox_relay_state WHERE slot = $1", s.cfg.Slot).Scan(&pending)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, classify(fmt.Errorf("read outbox_relay_state (run `relay migrate`): %w", err))
	}
	return pending, nil
}

// setBackfillPending records whether the slot's snapshot still has to be
// delivered; it is set before the slot exists and cleared only after the
// snapshot's rows are in the sink.
func (s *Source) setBackfillPending(ctx context.Context, pending bool) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	_, err := s.db.Exec(ctx, `INSERT INTO outbox_relay_state (slot, backfill_pending) VALUES ($1, $2)
		ON CONFLICT (slot) DO UPDATE SET backfill_pending = EXCLUDED.backfill_pending, updated_at = now()`, s.cfg.Slot, pending)
	if err != nil {
		return classify(fmt.Errorf("write outbox_relay_state (run `relay migrate`): %w", err))
	}
	return nil
}

// publishedColumns is the select list of a backfill: the columns the
// publication carries of the outbox table, so that rows read from the
// table have the shape the stream gives them (a column left out of the
// publication, PostgreSQL 15+, is left out of both). "*" when the
// publication has no column list, or the server has none (before 15).
func (s *Source) publishedColumns(ctx context.Context, tx pgx.Tx, o *Outbox) (string, error) {
	var names []string
	err := tx.QueryRow(ctx, `SELECT coalesce(array(SELECT jsonb_array_elements_text(to_jsonb(t) -> 'attnames')), '{}')
		FROM pg_publication_tables t WHERE t.pubname = $1 AND t.schemaname = $2 AND t.tablename = $3`,
		s.cfg.Publication, o.Schema, o.Table).Scan(&names)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && len(names) == 0 {
		return "*", nil
	}
	if err != nil {
		return "", classify(fmt.Errorf("read the columns publication %q carries: %w", s.cfg.Publication, err))
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(quoted, ", "), nil
}
