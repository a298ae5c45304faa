package clickhouse

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
	"github.com/outbox-relay/relay/internal/topology"
)

// Evolution is what the sink does with an extra column of the outbox table
// (one beyond the relay's own) that event_log does not have.
type Evolution string

const (
	// EvolveAdd adds the column to event_log (ALTER TABLE … ADD COLUMN)
	// before the first row that carries it is inserted.
	EvolveAdd Evolution = "add"
	// EvolveFill fills only the extra columns event_log already has.
	EvolveFill Evolution = "fill"
	// EvolveRefuse stops the relay at the first extra column event_log
	// does not have.
	EvolveRefuse Evolution = "refuse"
)

// ParseEvolution reads a RELAY_SCHEMA_EVOLUTION value.
func ParseEvolution(s string) (Evolution, error) {
	switch m := Evolution(s); m {
	case EvolveAdd, EvolveFill, EvolveRefuse:
		return m, nil
	}
	return "", fmt.Errorf("%q: use add, fill or refuse", s)
}

// extras carries the outbox table's extra columns into one ClickHouse table.
//
// Each shape of the outbox table (an event.Columns, announced by a
// Relation message) is resolved once against the table: columns are
// checked, added (EvolveAdd) or skipped (EvolveFill) before the first row
// of that shape is inserted. A batch holding several shapes is written as
// one INSERT whose columns are the union of theirs (one per run of them
// where a column's PostgreSQL type changed: see run); a row of a shape
// without one of them gets NULL there (or the type's default in a
// non-Nullable column), which is what ClickHouse itself writes for a
// column an INSERT leaves out, so rows from before a column existed read
// the same whichever batch they travelled in.
type extras struct {
	mode   Evolution
	layout topology.Layout
	caps   Caps
	table  map[string]tableColumn // the table's columns beyond the relay's
	plans  map[string]*plan       // by event.Columns.Key
	last   *event.Columns         // the shape of the last event resolved
	lastP  *plan
	cols   map[string]*extraColumn // encoders by name, type and PostgreSQL type
	warned map[string]bool
	// per batch (run, fill and query, in sink.go): the union of the
	// extra columns, and where each shape's columns go in it.
	union []*extraColumn
	slots map[*plan][]int
	// queries by the union's column names.
	queries map[string]string
}

// plan is how one shape's columns are written: targets[i] is the column
// for the shape's i-th extra column, nil when it is not written.
type plan struct {
	targets []*extraColumn
}

func newExtras(mode Evolution, layout topology.Layout, caps Caps) extras {
	return extras{mode: mode, layout: layout, caps: caps, table: map[string]tableColumn{}, plans: map[string]*plan{},
		cols: map[string]*extraColumn{}, warned: map[string]bool{}, slots: map[*plan][]int{}, queries: map[string]string{}}
}

// resolveShapesLocked is resolveShapes under the schema lock (see
// WithSchemaLock).
func (t *table) resolveShapesLocked(ctx context.Context, evs []event.Event) error {
	if mu := t.s.opts.schemaLock; mu != nil {
		mu.Lock()
		defer mu.Unlock()
	}
	return t.resolveShapes(ctx, evs)
}

// resolveShapes resolves every shape of evs not seen before.
func (t *table) resolveShapes(ctx context.Context, evs []event.Event) error {
	x := &t.extras
	for i := range evs {
		c := evs[i].Columns
		if c == nil || c == x.last {
			continue
		}
		p, ok := x.plans[c.Key]
		if !ok {
			var err error
			if p, err = t.resolve(ctx, c); err != nil {
				return err
			}
			x.plans[c.Key] = p
		}
		x.last, x.lastP = c, p
	}
	return nil
}

// planOf returns the resolved plan of a shape.
func (x *extras) planOf(c *event.Columns) *plan {
	if c == x.last {
		return x.lastP
	}
	return x.plans[c.Key]
}

// resolve works out how a shape's columns are written, adding the missing
// ones to event_log in EvolveAdd mode.
func (t *table) resolve(ctx context.Context, shape *event.Columns) (*plan, error) {
	x := &t.extras
	p := &plan{targets: make([]*extraColumn, len(shape.List))}
	refreshed := false
	for i, c := range shape.List {
		if relayColumns[c.Name] {
			return nil, refusal("outbox_event.%s (%s) has the name of a column the relay fills in %s itself. Rename it in PostgreSQL "+
				"(ALTER TABLE outbox_event RENAME COLUMN %s TO …); "+reshapeAdvice,
				c.Name, PGTypeName(c), t.name, pgx.Identifier{c.Name}.Sanitize())
		}
		want, mapped := MapType(c, x.caps)
		have, exists := x.table[c.Name]
		if !exists && !refreshed && x.mode != EvolveFill {
			// Someone may have added it since the sink read the table.
			if err := t.refresh(ctx); err != nil {
				return nil, err
			}
			refreshed = true
			have, exists = x.table[c.Name]
		}
		if !exists {
			switch {
			case x.mode == EvolveFill:
				t.warnOnce(c, "outbox column has no column in the ClickHouse table; not written (RELAY_SCHEMA_EVOLUTION=fill)")
				continue
			case !mapped:
				return nil, unmapped(c)
			case x.mode == EvolveRefuse:
				return nil, refusal("outbox_event.%s (%s) has no column in %s and RELAY_SCHEMA_EVOLUTION=refuse. Add it (ALTER TABLE %s ADD COLUMN %s %s), or run with RELAY_SCHEMA_EVOLUTION=add or fill, then restart the relay",
					c.Name, PGTypeName(c), t.name, t.name, chsql.Ident(c.Name), want)
			}
			if err := t.addColumn(ctx, c.Name, want); err != nil {
				return nil, err
			}
			if have, exists = x.table[c.Name]; !exists {
				return nil, retry.Permanent(fmt.Errorf("clickhouse: %s.%s is still missing after ALTER TABLE … ADD COLUMN", t.name, c.Name))
			}
		}
		if !mapped {
			return nil, unmapped(c)
		}
		if have.kind == "MATERIALIZED" || have.kind == "ALIAS" {
			return nil, refusal("outbox_event.%s (%s) has a %s column of the same name in %s, which cannot be written. Drop or rename one of them, then restart the relay",
				c.Name, PGTypeName(c), have.kind, t.name)
		}
		if !sameType(have.typ, want) {
			return nil, refusal("outbox_event.%s is %s, which maps to %s, but %s.%s is %s: the relay does not convert between them. "+
				"Make ClickHouse match (ALTER TABLE %s MODIFY COLUMN %s %s, if its rows convert) and restart the relay. "+
				"(Changing the PostgreSQL column back to a type that maps to %s is not enough by itself: the rows written since are in the WAL with the new type; "+
				"then also drop the relay's slot before the restart, which delivers the rows still in outbox_event from a snapshot; "+
				"not with RELAY_MESSAGE_PREFIX: messages exist only in the slot, so make ClickHouse match)",
				c.Name, PGTypeName(c), want, t.name, c.Name, have.typ, t.name, chsql.Ident(c.Name), want, have.typ)
		}
		col, err := x.column(c, have.typ)
		if err != nil {
			return nil, refusal("outbox_event.%s (%s) into %s.%s %s: %v", c.Name, PGTypeName(c), t.name, c.Name, have.typ, err)
		}
		p.targets[i] = col
	}
	return p, nil
}

// refusal is a schema change the relay will not apply.
func refusal(format string, args ...any) error {
	return retry.Permanent(fmt.Errorf("%w: "+format+"; nothing from this change on was acknowledged", append([]any{event.ErrSchema}, args...)...))
}

func unmapped(c event.Column) error {
	return refusal("outbox_event.%s has type %s, which the relay does not map to ClickHouse (README, \"Column mapping\"). "+
		"Change its type (ALTER TABLE outbox_event ALTER COLUMN … TYPE text USING …::text), "+
		"or leave it out of the publication (ALTER PUBLICATION … SET TABLE outbox_event (column, …), PostgreSQL 15+); "+reshapeAdvice+". "+
		"Messages (RELAY_MESSAGE_PREFIX) carry the type their publisher read: rebuild the publishers after the change; "+
		"the messages already written with it are delivered without the column under RELAY_SCHEMA_EVOLUTION=fill",
		c.Name, PGTypeName(c))
}

// reshapeAdvice is the second half of the advice for a change made in
// PostgreSQL: the WAL keeps the rows written before it in the old shape,
// so the slot must go; the outbox table still holds every row not yet
// delivered, and a new slot's snapshot delivers them in the new shape.
const reshapeAdvice = "the rows written before the change are in the WAL in the old shape, so then drop the relay's slot " +
	"(SELECT pg_drop_replication_slot('<RELAY_SLOT>')) and restart the relay: it recreates the slot and delivers every row still in " +
	"outbox_event from its snapshot (not with RELAY_MESSAGE_PREFIX: messages exist only in the slot)"

func (t *table) warnOnce(c event.Column, msg string) {
	if t.extras.warned[c.Name] {
		return
	}
	t.extras.warned[c.Name] = true
	t.s.log.Warn().Str("table", t.name).Str("column", c.Name).Str("type", PGTypeName(c)).Msg(msg)
}

// column returns the encoder of a column, one per name, ClickHouse type
// and PostgreSQL type, kept from batch to batch.
func (x *extras) column(c event.Column, chType string) (*extraColumn, error) {
	key := fmt.Sprintf("%s\x00%s\x00%d", c.Name, chType, c.TypeOID)
	if col, ok := x.cols[key]; ok {
		return col, nil
	}
	enc, err := newEncoder(c.TypeOID, chType, x.caps)
	if err != nil {
		return nil, err
	}
	col := &extraColumn{name: c.Name, typ: chType, enc: enc}
	x.cols[key] = col
	return col, nil
}
