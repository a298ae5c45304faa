// Package deadletter keeps the events the sink rejected for their content,
// in the PostgreSQL table outbox_dead_letter, so that a poison event neither
// disappears nor stalls the stream. Each dead letter names its stream and
// the ClickHouse table that rejected it. Storing is idempotent (a replayed
// rejection keeps the first row).
//
// The operator's side (relay deadletter) is List, Show, Replay and Discard.
// Replay moves rows back into their streams' outbox tables in one
// transaction, under their own keys, for the running relay to stream: it
// happens whole or not at all, and a repeated Replay finds nothing left to
// move.
package deadletter

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/pgerr"
	"github.com/outbox-relay/relay/internal/retry"
)

// Execer runs a statement (a *pgxpool.Pool satisfies it).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Store writes rejected events.
type Store struct{ db Execer }

// New returns a Store.
func New(db Execer) *Store { return &Store{db: db} }

// Rejected is an event with the reason the sink gave, and where it came
// from and went.
type Rejected struct {
	Event event.Event
	Err   error
	// Stream is the name of the event's stream (config.Stream.Name); ""
	// is stored as the default stream's.
	Stream string
	// Table is the ClickHouse table the event was written to; "" when none
	// could be resolved (a routed value that makes no valid table name).
	Table string
}

const insert = `INSERT INTO outbox_dead_letter
	(id, event_type, event_date_time, environment, event_context, metadata_version, error, columns, raw,
		stream, clickhouse_table, outbox_key)
	SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]::jsonb[], $6::bigint[], $7::text[],
		$8::text[]::jsonb[], $9::bytea[], $10::text[], $11::text[], $12::text[])
	ON CONFLICT (id) DO NOTHING`

// Put stores rs in one statement, each event whole: its extra columns
// too, since the outbox row is deleted once the event is dead-lettered.
func (s *Store) Put(ctx context.Context, rs []Rejected) error {
	if len(rs) == 0 {
		return nil
	}
	n := len(rs)
	types := pgtype.NewMap() // a Map is not safe for concurrent use; dead letters are rare
	ids, evTypes, envs, ctxs, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	times, versions, extras, raws := make([]pgtype.Timestamptz, n), make([]int64, n), make([]*string, n), make([][]byte, n)
	streams, tables, keys := make([]string, n), make([]*string, n), make([]*string, n)
	for i, r := range rs {
		streams[i], tables[i], keys[i] = r.Stream, nonEmpty(r.Table), nonEmpty(r.Event.Key)
		if streams[i] == "" {
			streams[i] = config.DefaultStreamName
		}
		ids[i] = uuid.UUID(r.Event.ID).String()
		evTypes[i], envs[i], ctxs[i] = r.Event.Type, r.Event.Environment, string(r.Event.Context)
		times[i], versions[i], errs[i] = timestamptz(r.Event.OccurredAt), r.Event.MetadataVersion, r.Err.Error()
		if r.Event.Undecodable != nil {
			ctxs[i], raws[i] = "null", r.Event.Undecodable.Raw
		}
		extra, err := extraText(types, r.Event)
		if err != nil {
			// Only a type the relay does not map could fail here, and
			// the stream refuses those first: stop rather than lose it.
			return retry.Permanent(err)
		}
		if extra != nil {
			text := string(extra)
			extras[i] = &text
		}
	}
	if _, err := s.db.Exec(ctx, insert, ids, evTypes, times, envs, ctxs, versions, errs, extras, raws,
		streams, tables, keys); err != nil {
		return pgerr.Classify(fmt.Errorf("store %d rejected events in outbox_dead_letter: %w", n, err))
	}
	return nil
}

// nonEmpty is s, or NULL for "".
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// timestamptz stores event.Infinity and event.NegInfinity as what they
// were read as: 'infinity' and '-infinity'.
func timestamptz(t time.Time) pgtype.Timestamptz {
	switch {
	case t.Equal(event.Infinity):
		return pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	case t.Equal(event.NegInfinity):
		return pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}
