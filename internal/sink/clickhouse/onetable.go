package clickhouse

import (
	"context"
	"time"

	"github.com/outbox-relay/relay/internal/event"
)

// OneTable is a Sink bound to one table, for a caller that writes only
// that one (WriteBatch without the table).
type OneTable struct {
	Sink  *Sink
	Table string
}

// WriteBatch is Sink.WriteBatch into o.Table.
func (o OneTable) WriteBatch(ctx context.Context, evs []event.Event, token string, relayedAt time.Time) error {
	return o.Sink.WriteBatch(ctx, o.Table, evs, token, relayedAt)
}
