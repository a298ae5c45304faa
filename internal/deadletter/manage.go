package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// DB runs the statements of the operator commands (a *pgxpool.Pool
// satisfies it).
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Letter is one row of outbox_dead_letter. Context and Columns are set by
// Show only;
// PayloadBytes is the size of event_context as text.
type Letter struct {
	ID uuid.UUID `json:"id"`
	// Stream is the name of the stream the event came from.
	Stream string `json:"stream"`
	// Table is the ClickHouse table that rejected the event; "" when none
	// could be resolved (a routed value that makes no valid table name, a
	// message that held no event).
	Table string `json:"clickhouse_table"`
	// Key is the outbox row's primary key as text when it is not a uuid
	// (the id is derived from it); replay puts the row back under it.
	Key             string          `json:"outbox_key,omitempty"`
	EventType       string          `json:"event_type"`
	EventDateTime   time.Time       `json:"event_date_time"`
	Environment     string          `json:"environment"`
	MetadataVersion int64           `json:"metadata_version"`
	Error           string          `json:"error"`
	FailedAt        time.Time       `json:"failed_at"`
	PayloadBytes    int64           `json:"payload_bytes"`
	Context         json.RawMessage `json:"event_context,omitempty"`
	// Columns are the outbox table's extra columns the event had, as
	// PostgreSQL text (null for NULL); set by Show only.
	Columns map[string]*string `json:"columns,omitempty"`
	// Raw is the payload of a message that held no event (Show only).
	Raw []byte `json:"raw_payload,omitempty"`
}

// Filter selects dead letters; the zero value selects every row. Fields
// combine with AND.
type Filter struct {
	IDs     []uuid.UUID
	Types   []string
	Streams []string // stream names
	// OlderThan and NewerThan bound the age of failed_at (0 is no bound).
	OlderThan, NewerThan time.Duration
}

// where is the condition of every statement; parameters $1..$5 are
// Filter.args, NULL meaning "no bound".
const where = `($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
	AND ($2::text[] IS NULL OR event_type = ANY($2::text[]))
	AND ($3::float8 IS NULL OR failed_at <= now() - make_interval(secs => $3::float8))
	AND ($4::float8 IS NULL OR failed_at > now() - make_interval(secs => $4::float8))
	AND ($5::text[] IS NULL OR stream = ANY($5::text[]))`

func (f Filter) args() []any {
	args := []any{nil, nil, nil, nil, nil}
	if len(f.IDs) > 0 {
		ids := make([]string, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = id.String()
		}
		args[0] = ids
	}
	if len(f.Types) > 0 {
		args[1] = f.Types
	}
	if f.OlderThan > 0 {
		args[2] = f.OlderThan.Seconds()
	}
	if f.NewerThan > 0 {
		args[3] = f.NewerThan.Seconds()
	}
	if len(f.Streams) > 0 {
		args[4] = f.Streams
	}
	return args
}

const listSQL = `SELECT id, stream, coalesce(clickhouse_table, ''), coalesce(outbox_key, ''), event_type, event_date_time,
	environment, metadata_version, error, failed_at, octet_length(event_context::text), count(*) OVER ()
FROM outbox_dead_letter WHERE ` + where + `
ORDER BY failed_at, id LIMIT $6`

// List returns up to limit dead letters matching f, oldest failure first,
// without their payloads, and how many match in all. A limit of 0 or less
// returns all.
func List(ctx context.Context, db DB, f Filter, limit int) ([]Letter, int64, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	rows, err := db.Query(ctx, listSQL, append(f.args(), lim)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list outbox_dead_letter: %w", err)
	}
	defer rows.Close()
	out := []Letter{}
	var total int64
	for rows.Next() {
		var l Letter
		if err := rows.Scan(&l.ID, &l.Stream, &l.Table, &l.Key, &l.EventType, &l.EventDateTime, &l.Environment, &l.MetadataVersion,
			&l.Error, &l.FailedAt, &l.PayloadBytes, &total); err != nil {
			return nil, 0, fmt.Errorf("read outbox_dead_letter: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list outbox_dead_letter: %w", err)
	}
	return out, total, nil
}

// ErrNotFound is returned by Show for an id that is not a dead letter.
var ErrNotFound = errors.New("no such dead letter")

// Show returns the whole row with id, payload included.
func Show(ctx context.Context, db DB, id uuid.UUID) (Letter, error) {
	l := Letter{ID: id}
	var payload string
	err := db.QueryRow(ctx, `SELECT stream, coalesce(clickhouse_table, ''), coalesce(outbox_key, ''), event_type, event_date_time,
		environment, metadata_version, error, failed_at, event_context::text, columns, raw FROM outbox_dead_letter WHERE id = $1`, id).
		Scan(&l.Stream, &l.Table, &l.Key, &l.EventType, &l.EventDateTime, &l.Environment, &l.MetadataVersion, &l.Error, &l.FailedAt, &payload, &l.Columns, &l.Raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return l, fmt.Errorf("read dead letter %s: %w", id, err)
	}
	l.Context, l.PayloadBytes = json.RawMessage(payload), int64(len(payload))
	return l, nil
}

// Discard deletes the dead letters with ids (and matching f) for good and
// returns the ids it deleted.
func Discard(ctx context.Context, db DB, f Filter) ([]uuid.UUID, error) {
	rows, err := db.Query(ctx, `DELETE FROM outbox_dead_letter WHERE `+where+` RETURNING id`, f.args()...)
	if err != nil {
		return nil, fmt.Errorf("discard dead letters: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("discard dead letters: %w", err)
	}
	return ids, nil
}
