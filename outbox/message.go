package outbox

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/outbox-relay/relay/internal/payload"
)

// emitSQL emits one transactional message per array element, in array
// order (unnest yields its elements in order and the aggregate consumes
// them as they come), in one round trip. The first argument is always
// true: a non-transactional message would be decoded even when the
// caller's transaction rolls back, and at once rather than at its commit,
// so this package never emits one.
const emitSQL = "SELECT count(pg_logical_emit_message(true, $1::text, m.p))" +
	" FROM unnest($2::bytea[]) WITH ORDINALITY AS m(p, ord)"

// emit sends the events as messages of p.prefix on tx.
func (p *Publisher) emit(ctx context.Context, tx Execer, c columns, events []Event) error {
	var err error
	if p.shape == nil {
		_, err = tx.Exec(ctx, emitSQL, p.prefix, c.payloads(p.environment))
	} else {
		sql, args := p.emitWithColumns(c, events)
		_, err = tx.Exec(ctx, sql, args...)
	}
	if err != nil {
		return fmt.Errorf("outbox: emit %d event messages: %w", len(c.ids), err)
	}
	return nil
}

// emitWithColumns is the statement for a publisher with typed extra
// columns: every event carries all of them (as a table row does), so
// PostgreSQL encodes their values into each payload between the head and
// the context that the publisher encodes:
//
//	head || record_send(ROW(v1, …, vn)) || context
//
// record_send writes each value with its type's send function, which is
// what pgoutput sends for a table row's column with the binary option,
// after the same conversions an INSERT applies: a parameter in the
// column's type (pgx encodes it as for the INSERT of table mode), the
// type modifier applied (numeric scale, timestamp precision; over-long
// strings refused), the column's DEFAULT for a column the event leaves
// out. VALUES yields the rows, and count consumes them, in event order.
func (p *Publisher) emitWithColumns(c columns, events []Event) (string, []any) {
	heads, contexts := c.heads(p.environment, p.shape)
	args := []any{p.prefix, heads, contexts}
	var b strings.Builder
	b.WriteString("SELECT count(pg_logical_emit_message(true, $1::text, m.p)) FROM (VALUES ")
	for i := range events {
		if i > 0 {
			b.WriteString(", ")
		}
		n := strconv.Itoa(i + 1)
		b.WriteString("(($2::bytea[])[" + n + "] || record_send(ROW(")
		for j, col := range p.typed {
			if j > 0 {
				b.WriteString(", ")
			}
			v, set := events[i].Columns[col.name]
			switch {
			case set:
				args = append(args, v)
				b.WriteString(col.valueSQL("$" + strconv.Itoa(len(args))))
			case col.def != "":
				b.WriteString(col.valueSQL(col.def))
			default:
				b.WriteString("NULL::" + col.typ)
			}
		}
		b.WriteString(")) || ($3::bytea[])[" + n + "])")
	}
	b.WriteString(") AS m(p)")
	return b.String(), args
}

// payloadColumns are the typed columns as a payload declares them.
func (p *Publisher) payloadColumns() []payload.Column {
	cols := make([]payload.Column, len(p.typed))
	for i, c := range p.typed {
		cols[i] = payload.Column{Name: c.name, TypeOID: c.oid, TypeMod: c.mod, NotNull: c.notNull}
	}
	return cols
}

// fields are event i's payload fields but its context.
func (c columns) fields(i int, environment string) payload.Fields {
	return payload.Fields{
		ID:               c.ids[i],
		OccurredAtMicros: c.times[i].UnixMicro(),
		MetadataVersion:  c.versions[i],
		Type:             []byte(c.types[i]),
		Environment:      []byte(environment),
	}
}

// heads encodes every event's payload head (with shape) and context.
func (c columns) heads(environment string, shape []byte) (heads, contexts [][]byte) {
	heads, contexts = make([][]byte, len(c.ids)), make([][]byte, len(c.ids))
	for i := range c.ids {
		heads[i] = payload.AppendHead(nil, c.fields(i, environment), shape)
		contexts[i] = []byte(c.contexts[i])
	}
	return heads, contexts
}

// payloads encodes every event in the wire format of package payload.
func (c columns) payloads(environment string) [][]byte {
	out := make([][]byte, len(c.ids))
	for i := range c.ids {
		f := c.fields(i, environment)
		f.Context = []byte(c.contexts[i])
		out[i] = payload.Append(make([]byte, 0, payload.Size(f, nil)), f, nil)
	}
	return out
}
