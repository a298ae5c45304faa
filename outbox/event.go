package outbox

import (
	"time"

	"github.com/google/uuid"
)

// Event is one outbox row to be written by [Publisher.Publish].
type Event struct {
	// ID identifies the event end to end. The zero value means "generate one"
	// (uuid.New); Publish returns the ids it used.
	ID uuid.UUID
	// Type names the event, e.g. "user_created". Required.
	Type string
	// OccurredAt is when the business fact happened. The zero value means the
	// time of the Publish call. It is stored in UTC truncated to microseconds,
	// Postgres' timestamptz precision.
	OccurredAt time.Time
	// Context is the event payload, stored as jsonb. It is either raw JSON
	// (json.RawMessage or []byte, checked for validity) or any value that
	// encoding/json can marshal. It must not encode to JSON null, and strings
	// in it must not contain \u0000, which jsonb rejects.
	Context any
	// MetadataVersion is the version of the Context schema. 0 means 1.
	MetadataVersion int64
	// Columns sets extra columns of the outbox table (those beyond the
	// relay's own, e.g. "user_id"), which the relay carries to the
	// ClickHouse column of the same name. Each name must be one the
	// publisher knows ([WithColumns], [TableColumns], or in message mode
	// [WithColumnTypes] with [ColumnTypes]); each value is anything pgx
	// encodes into the column's type. Columns left out get the column's
	// DEFAULT. A message carries the values as the table's row would
	// (see [WithMessages]), so both arrive in ClickHouse alike.
	Columns map[string]any
}
