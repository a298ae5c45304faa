package cli

import (
	"context"
	"time"

	"github.com/outbox-relay/relay/internal/event"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
)

// oneTable adapts a sink bound to one table (temporary, until the sink
// writes any table).
type oneTable struct{ *chsink.Sink }

func (o oneTable) WriteBatch(ctx context.Context, _ string, evs []event.Event, token string, relayedAt time.Time) error {
	return o.Sink.WriteBatch(ctx, evs, token, relayedAt)
}
