package replication

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/payload"
	"github.com/outbox-relay/relay/internal/retry"
)

// newRelation maps a table's shape (a Relation message, or the columns of
// the backfill's query) onto events; see session.relation.
func (s *Source) newRelation(ctx context.Context, m *pglogrepl.RelationMessage, o *Outbox) (*relation, error) {
	var notNull map[string]bool
	if names := extraNames(m, o); len(names) > 0 {
		var err error
		if notNull, err = s.notNull(ctx, m.RelationID); err != nil {
			return nil, err
		}
	}
	rel, err := newRelation(m, o, len(s.shapes)+1, notNull)
	if err != nil {
		if s.cfg.MessagePrefix != "" {
			err = fmt.Errorf("%w. %s", err, messageModeSlotDrop)
		}
		return nil, retry.Permanent(err)
	}
	if rel.columns != nil {
		var isNew bool
		if rel.columns, isNew = s.keepShape(rel.columns); isNew {
			s.log.Info().Str("relation", rel.name).Str("stream", o.Name).Int("shape", rel.columns.Version).
				Strs("extra_columns", columnNames(rel.columns)).Msg("outbox table shape")
		}
	}
	return rel, nil
}

// keepShape returns the shape kept for c's key, or keeps c (isNew): rows and
// messages of one shape share one *event.Columns for the life of the
// Source, which the sink resolves once.
func (s *Source) keepShape(c *event.Columns) (kept *event.Columns, isNew bool) {
	if seen := s.shapes[c.Key]; seen != nil {
		return seen, false
	}
	s.shapes[c.Key] = c
	return c, true
}

func columnNames(c *event.Columns) []string {
	names := make([]string, len(c.List))
	for i, col := range c.List {
		names[i] = col.Name
	}
	return names
}

// notNull reads which columns of the table are NOT NULL.
func (s *Source) notNull(ctx context.Context, relID uint32) (map[string]bool, error) {
	cctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var names []string
	err := s.db.QueryRow(cctx, `SELECT coalesce(array_agg(attname::text) FILTER (WHERE attnotnull), '{}')
		FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, relID).Scan(&names)
	if err != nil {
		return nil, classify(fmt.Errorf("read the outbox table's NOT NULL columns: %w", err))
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m, nil
}

// messageShape returns the event.Columns of a version 2 payload's columns:
// the one a Relation message of the same columns has (keyed alike in
// Source.shapes), so the sink resolves them once and a batch mixing rows
// and messages of one shape is one shape. The last one is reused while
// messages repeat it, without a lookup.
func (s *Source) messageShape(f payload.Fields) *event.Columns {
	raw := f.Shape()
	if s.lastMsgShape != nil && bytes.Equal(raw, s.lastMsgRaw) {
		return s.lastMsgShape
	}
	c, ok := s.msgShapes[string(raw)]
	if !ok {
		pcols := f.Columns()
		list := make([]event.Column, len(pcols))
		for i, pc := range pcols {
			list[i] = event.Column{Name: pc.Name, TypeOID: pc.TypeOID, TypeMod: pc.TypeMod, NotNull: pc.NotNull}
		}
		var isNew bool
		if c, isNew = s.keepShape(event.NewColumns(len(s.shapes)+1, list)); isNew {
			s.log.Info().Str("prefix", s.cfg.MessagePrefix).Int("shape", c.Version).
				Strs("extra_columns", columnNames(c)).Msg("outbox message shape")
		}
		if s.msgShapes == nil {
			s.msgShapes = map[string]*event.Columns{}
		}
		s.msgShapes[string(raw)] = c
	}
	s.lastMsgRaw, s.lastMsgShape = append(s.lastMsgRaw[:0], raw...), c
	return c
}
