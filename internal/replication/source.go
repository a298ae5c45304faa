// Package replication streams outbox INSERTs from a PostgreSQL logical
// replication slot (plugin pgoutput) and hands them on as Items.
//
// Contract:
//   - One goroutine (Run) owns the replication connection for one session:
//     Run returns when the stream fails or after shutdown, and the caller
//     runs a new session to reconnect (relay run builds a Source for each).
//   - Nothing is confirmed on receipt. The consumer calls the ack.Tracker's
//     Flushed once a transaction is in the sink (and its rows deleted); Run's
//     standby status updates report the tracker's positions (sendStatus, in
//     standby_status.go, is the one place a position reaches PostgreSQL).
//   - Run never closes out: the caller owns it. Items arrive on it in order,
//     in slices of at most 256: the stream hands over what it queued
//     whenever it has handled every byte received (see session.gather), so
//     one slice carries the transactions of one read and may end inside
//     one. Items of one transaction end with a Commit item; its AfterConfirm,
//     if set, the consumer runs once the commit is in the sink. A
//     transaction the stream stopped inside has no Commit: the consumer
//     drops its items, and the next session streams it again. After
//     shutdown the last item is an End item.
//   - The caller closes drained once it has confirmed what it received, or
//     when it stops taking items. After ctx ends Run waits for that, up to
//     DrainTimeout, before its final status update; a closed drained also
//     ends a hand-over that waits (see handoverContext).
//   - Before an event is queued its weight is taken from the Budget; the
//     consumer gives it back (Events) once the event is written or
//     dropped, Run gives back the weight of what it queued and never handed
//     over. While the stream waits on a spent budget or a full channel, Run
//     keeps sending status updates so wal_sender_timeout never ends it.
//   - A slot created by Run exports a snapshot; the rows already in the
//     outbox table in that snapshot are handed over first (backfill), so
//     events written before the slot existed are delivered too, with no gap
//     and no overlap with the stream. A marker in outbox_relay_state makes
//     the next start deliver the table again if a backfill did not finish.
//   - In message mode (Config.MessagePrefix) the transactional logical
//     decoding messages of the prefix are events too, in stream order among
//     the table's inserts; other messages are counted and skipped. No
//     table holds them, so a lost or recreated slot loses the messages of
//     the gap: Run records it and reports it (Hooks.EventsMayBeLost).
package replication

import (
	"context"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/failpoint"
)

// Item is one step of the stream: an event, or the end of a transaction.
type Item struct {
	Event event.Event
	// Commit marks the end of a transaction; EndLSN is then the position
	// that may be acknowledged once every earlier event is in the sink.
	Commit bool
	EndLSN uint64
	// AfterConfirm, on a Commit, runs once the commit is in the sink, its rows
	// are deleted and its position is confirmed.
	AfterConfirm func(context.Context) error
	// End says the source stopped reading for shutdown: no item follows.
	End bool
	// Backfill marks rows read from the table (and their Commit) rather
	// than streamed: they have no stable position in the stream.
	Backfill bool
	// At is when the item's message arrived: the flush interval counts
	// from here, not from when the consumer got to it.
	At time.Time
}

// DB runs the regular (non-replication) queries: checks and backfill.
type DB interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Config is what the source needs to know.
type Config struct {
	// ConnString is a libpq URL or DSN; replication=database is added.
	ConnString  string
	Slot        string
	Publication string
	// Outboxes are the streams' outbox tables (Describe), in stream order.
	Outboxes []Outbox
	// StatusInterval is the longest time between standby status updates.
	StatusInterval time.Duration
	// DrainTimeout bounds how long Run waits, after ctx ends, for the
	// consumer to flush before the final status update.
	DrainTimeout time.Duration
	// ReceiveWait is how long the stream waits, once it caught up, before
	// reading again (see session.gather); 0 reads at once.
	ReceiveWait time.Duration
	// NextCut, when set, says when the consumer expects to cut its next
	// batch (the zero time: unknown). A caught-up stream then waits
	// longer while that is far off, halving toward it, never less than
	// ReceiveWait (see session.gather).
	NextCut func() time.Time
	// MessagePrefix, when set, turns message mode on: the stream also
	// carries logical decoding messages (PostgreSQL 14+), and the
	// transactional ones of this prefix are events (package payload).
	MessagePrefix string
	// SlotFailover makes the slot a failover slot on PostgreSQL 17+ (see
	// failover.go); it is ignored before 17.
	SlotFailover bool
}

// Source is a pgoutput stream reader.
type Source struct {
	cfg     Config
	db      DB
	tracker *ack.Tracker
	budget  *event.Budget
	log     zerolog.Logger
	hooks   Hooks
	fp      *failpoint.Set
	// shapes are the outbox table's extra column sets seen, by Key: one
	// event.Columns per shape for the life of the Source.
	shapes map[string]*event.Columns
	// msgShapes are the shapes of messages' extra columns by their
	// encoding in the payload; lastMsgRaw and lastMsgShape the last one.
	msgShapes    map[string]*event.Columns
	lastMsgRaw   []byte
	lastMsgShape *event.Columns
}

// Hooks observe the stream (metrics); every field is optional.
type Hooks struct {
	Connected    func(bool)
	SlotCreated  func(name string)
	SlotLost     func(name string)
	Backfilled   func(n int)
	ServerWALEnd func(lsn uint64)
	// MessageIgnored counts a logical decoding message that is not an
	// event: reason is MessageOtherPrefix or MessageNonTransactional.
	MessageIgnored func(reason string)
	// EventsMayBeLost reports, in message mode, that the slot was lost or
	// recreated (at), so messages emitted meanwhile are gone; it is also
	// called at start while that mark is recorded.
	EventsMayBeLost func(slot string, at time.Time)
}

// Reasons of Hooks.MessageIgnored (the metric's label values).
const (
	MessageOtherPrefix      = "other_prefix"
	MessageNonTransactional = "non_transactional"
)

// New returns a Source. tracker must start at the position the consumer
// has durably stored.
// log should carry the slot's name (relay run adds it to every line); the
// source does not add it again.
func New(cfg Config, db DB, tracker *ack.Tracker, budget *event.Budget, log zerolog.Logger, hooks Hooks, fp *failpoint.Set) *Source {
	return &Source{cfg: cfg, db: db, tracker: tracker, budget: budget, log: log, hooks: hooks, fp: fp, shapes: map[string]*event.Columns{}}
}

// outbox is the stream whose outbox table is schema.table, nil when none.
func (s *Source) outbox(schema, table string) *Outbox {
	for i := range s.cfg.Outboxes {
		if o := &s.cfg.Outboxes[i]; o.Schema == schema && o.Table == table {
			return o
		}
	}
	return nil
}

// Events yields the events among its (not their Commit and End markers):
// what the budget holds for them.
func Events(its []Item) iter.Seq[*event.Event] {
	return func(yield func(*event.Event) bool) {
		for i := range its {
			if !its[i].Commit && !its[i].End && !yield(&its[i].Event) {
				return
			}
		}
	}
}
