package outbox

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by [ValidationError]; test with errors.Is.
var (
	// ErrEmptyType: Event.Type is empty or blank.
	ErrEmptyType = errors.New("event type is empty")
	// ErrInvalidContext: Event.Context cannot be encoded, is not valid JSON,
	// is JSON null, or contains something Postgres jsonb rejects.
	ErrInvalidContext = errors.New("event context is not valid JSON")
	// ErrContextTooLarge: the encoded Event.Context exceeds the publisher's limit.
	ErrContextTooLarge = errors.New("event context too large")
	// ErrInvalidMetadataVersion: Event.MetadataVersion is negative.
	ErrInvalidMetadataVersion = errors.New("event metadata version is negative")
	// ErrUnknownColumn: Event.Columns names a column the publisher does
	// not know as an extra column of the outbox table.
	ErrUnknownColumn = errors.New("unknown outbox column")
	// ErrNotNull: in message mode, an event sets a NOT NULL extra column
	// to NULL, or leaves out one without a default (in table mode
	// PostgreSQL's INSERT refuses it instead).
	ErrNotNull = errors.New("NULL in a NOT NULL outbox column")
)

// ValidationError reports which event of a Publish call was rejected and why.
// Err wraps one of the sentinel errors above.
type ValidationError struct {
	Index int   // position of the event in the Publish call
	Err   error // wraps ErrEmptyType, ErrInvalidContext, ErrContextTooLarge, ErrInvalidMetadataVersion, ErrUnknownColumn or ErrNotNull
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("outbox: event %d: %v", e.Index, e.Err)
}

// Unwrap lets errors.Is match the sentinel.
func (e *ValidationError) Unwrap() error { return e.Err }
