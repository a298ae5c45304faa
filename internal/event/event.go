// Package event defines the unit that moves through the relay:
// replication -> batch -> sink -> delete -> confirm.
package event

import (
	"errors"
	"time"
)

// Event is one outbox_event row as decoded from the replication stream.
//
// Context holds the event_context JSON text; it is owned by the event (never
// a view into a reused network buffer).
type Event struct {
	// ID is the event's identity in ClickHouse (event_id): the outbox
	// row's uuid, or one derived from its primary key and table (Identity).
	ID [16]byte
	// Key is the row's primary key as text when it is not a uuid (then ID
	// is derived from it), empty when ID is the key.
	Key string
	// Stream indexes the relay's streams (config.Streams): the outbox
	// table the row came from, and where it goes.
	Stream          uint16
	Type            string
	OccurredAt      time.Time
	Environment     string
	Context         []byte
	MetadataVersion int64

	// Columns and Extra carry the outbox table's columns beyond the relay's
	// own (nil when it has none): Columns is their shape, shared by every
	// event decoded under one Relation message; Extra their values, in
	// that order, encoded as pgoutput's TupleData (see Values).
	Columns *Columns
	Extra   []byte

	// CommitLSN is the LSN of the commit record of the transaction that wrote
	// the event. It is identical on every replay of that transaction, so the
	// sink can use it as a deterministic version.
	CommitLSN uint64
	// CommitTime is when that transaction committed (for end-to-end lag).
	CommitTime time.Time
	// FromMessage says a logical decoding message carried the event: there
	// is no outbox row to delete once it is delivered.
	FromMessage bool
	// Undecodable, when set, says the source could not read this event (a
	// message with the outbox prefix whose payload is not one: anyone may
	// emit such a message). The relay dead-letters it, never writes it, and
	// the stream goes on. A pointer: rare, and every event carries it.
	Undecodable *Undecodable
}

// Undecodable is what the source kept of an event it could not read: why,
// and the payload as it came.
type Undecodable struct {
	Err error
	Raw []byte
}

// Infinity and NegInfinity stand for PostgreSQL's timestamps 'infinity' and
// '-infinity' in OccurredAt: just outside the range PostgreSQL can store
// (4713 BC to 294276 AD), so no real value is mistaken for them, and far
// outside what any sink stores, so such an event is rejected and
// dead-lettered as what it was.
var (
	Infinity    = time.Date(294277, 1, 1, 0, 0, 0, 0, time.UTC)
	NegInfinity = time.Date(-4714, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Size is the memory the event takes in the relay: its payload plus what
// is kept per event besides (the Event itself, the item that carried it,
// its place in a batch: about 256 bytes). The byte budget and batch limits
// are expressed in it.
func (e *Event) Size() int {
	if e.Undecodable != nil {
		return len(e.Undecodable.Raw) + perEventOverhead
	}
	return len(e.Context) + len(e.Type) + len(e.Environment) + len(e.Extra) + perEventOverhead
}

// perEventOverhead is an estimate: an Event is 144 bytes, the replication.Item
// that carries it 192, and the batch holds the Event once more.
const perEventOverhead = 256

// ErrRejected marks a sink error caused by the content of an event (a value
// the sink cannot store), as opposed to the sink being down or misconfigured.
// The relay isolates such events and dead-letters them.
var ErrRejected = errors.New("rejected by the sink")

// ErrSchema marks a change of the outbox table's shape that the relay
// refuses to apply (a relay column dropped, renamed or retyped, or an
// extra column whose type cannot be carried safely). The relay stops
// before acknowledging anything the change affects; the message says what
// to do, and a restart after that resumes where it stopped.
var ErrSchema = errors.New("schema change refused")

// Row is an outbox row to delete once its event is delivered: its stream
// and key (ID when the key is a uuid, else Key).
type Row struct {
	Stream uint16
	ID     [16]byte
	Key    string
}
