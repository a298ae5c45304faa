package outbox

import (
	"context"
	"fmt"

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
func (p *Publisher) emit(ctx context.Context, tx Execer, c columns) error {
	if _, err := tx.Exec(ctx, emitSQL, p.prefix, c.payloads(p.environment)); err != nil {
		return fmt.Errorf("outbox: emit %d event messages: %w", len(c.ids), err)
	}
	return nil
}

// payloads encodes every event in the wire format of package payload.
func (c columns) payloads(environment string) [][]byte {
	out := make([][]byte, len(c.ids))
	for i := range c.ids {
		f := payload.Fields{
			ID:               c.ids[i],
			OccurredAtMicros: c.times[i].UnixMicro(),
			MetadataVersion:  c.versions[i],
			Type:             []byte(c.types[i]),
			Environment:      []byte(environment),
			Context:          []byte(c.contexts[i]),
		}
		out[i] = payload.Append(make([]byte, 0, payload.Size(f, nil)), f, nil)
	}
	return out
}
