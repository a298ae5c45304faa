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
	ID              uuid.UUID       `json:"id"`
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
	IDs   []uuid.UUID
	Types []string
	// OlderThan and NewerThan bound the age of failed_at (0 is no bound).
	OlderThan, NewerThan time.Duration
}

// where is the condition of every statement; parameters $1..$4 are
// Filter.args, NULL meaning "no bound".
const where = `($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
	AND ($2::text[] IS NULL OR event_type = ANY($2::text[]))
	AND ($3::float8 IS NULL OR failed_at <= now() - make_interval(secs => $3::float8))
	AND ($4::float8 IS NULL OR failed_at > now() - make_interval(secs => $4::float8))`

func (f Filter) args() []any {
	args := []any{nil, nil, nil, nil}
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
	return args
}

const listSQL = `SELECT id, event_type, event_date_time, environment, metadata_version, error, failed_at,
	octet_length(event_context::text), count(*) OVER ()
FROM outbox_dead_letter WHERE ` + where + `
ORDER BY failed_at, id LIMIT $5`

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
		if err := rows.Scan(&l.ID, &l.EventType, &l.EventDateTime, &l.Environment, &l.MetadataVersion,
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
	err := db.QueryRow(ctx, `SELECT event_type, event_date_time, environment, metadata_version, error, failed_at,
		event_context::text, columns, raw FROM outbox_dead_letter WHERE id = $1`, id).
		Scan(&l.EventType, &l.EventDateTime, &l.Environment, &l.MetadataVersion, &l.Error, &l.FailedAt, &payload, &l.Columns, &l.Raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return l, fmt.Errorf("read dead letter %s: %w", id, err)
	}
	l.Context, l.PayloadBytes = json.RawMessage(payload), int64(len(payload))
	return l, nil
}

// Moved is the outcome of Replay for one event.
type Moved struct {
	ID uuid.UUID `json:"id"`
	// Inserted is false when outbox_event already held a row with the id
	// (it is delivered from there; the dead letter is removed all the same).
	Inserted bool `json:"inserted"`
}

// outboxColumn is a column of outbox_event beyond the relay's own, as a
// replay needs it: the type to cast a kept text value to, and the default
// for a dead letter that has no value for it (stored before the column was
// added).
type outboxColumn struct {
	name, typ string
	def       *string
}

// relayColumns are outbox_event's own columns, which every dead letter has.
var relayColumns = map[string]bool{
	"id": true, "event_type": true, "event_date_time": true, "environment": true,
	"event_context": true, "metadata_version": true,
}

// outboxColumns reads outbox_event's extra columns from the catalog.
func outboxColumns(ctx context.Context, tx pgx.Tx) ([]outboxColumn, error) {
	rows, err := tx.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid)
		FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = 'outbox_event'::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("read outbox_event's columns: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxColumn, error) {
		var c outboxColumn
		return c, r.Scan(&c.name, &c.typ, &c.def)
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox_event's columns: %w", err)
	}
	var extra []outboxColumn
	for _, c := range all {
		if !relayColumns[c.name] {
			extra = append(extra, c)
		}
	}
	return extra, nil
}

// replaySQL moves the rows in one statement: the DELETE and the INSERT are
// one atomic change, so a replay killed at any point either happened whole
// or not at all, and a repeated replay finds nothing left to move. The id is
// kept, so the event reaches ClickHouse under its own event_id (a replay of
// an event that did arrive collapses in event_log FINAL). Each extra column
// gets the value the dead letter kept, cast from its text, or the column's
// default where the dead letter has none; extra[k]'s name is parameter
// $5[k+1].
func replaySQL(extra []outboxColumn) string {
	cols, vals := "", ""
	for k, c := range extra {
		key := fmt.Sprintf("($5::text[])[%d]", k+1)
		def := "NULL"
		if c.def != nil {
			def = *c.def
		}
		cols += ", " + pgx.Identifier{c.name}.Sanitize()
		vals += fmt.Sprintf(",\n\t\tCASE WHEN columns ? %s THEN (columns ->> %s)::%s ELSE %s END", key, key, c.typ, def)
	}
	return `WITH moved AS (
	DELETE FROM outbox_dead_letter WHERE ` + where + `
	RETURNING id, event_type, event_date_time, environment, event_context, metadata_version, columns
), ins AS (
	INSERT INTO outbox_event (id, event_type, event_date_time, environment, event_context, metadata_version` + cols + `)
	SELECT id, event_type, event_date_time, environment, event_context, metadata_version` + vals + `
	FROM moved
	ON CONFLICT (id) DO NOTHING
	RETURNING id
)
SELECT m.id, i.id IS NOT NULL FROM moved m LEFT JOIN ins i ON i.id = m.id ORDER BY m.id`
}

// ErrUndecodable is returned by Replay for dead letters of messages that
// held no event: there is nothing to put back into outbox_event.
var ErrUndecodable = errors.New("dead letters of messages that held no event cannot be replayed")

// ErrColumnGone is returned by Replay for dead letters that kept a value
// of a column outbox_event no longer has: moving them would lose it.
var ErrColumnGone = errors.New("dead letters hold a column outbox_event no longer has")

// checkReplayable refuses a replay of messages that held no event, and one
// that would drop a kept column value.
func checkReplayable(ctx context.Context, tx pgx.Tx, f Filter, extra []outboxColumn) error {
	names := make([]string, len(extra))
	for i, c := range extra {
		names[i] = c.name
	}
	var undecodable int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letter WHERE `+where+` AND raw IS NOT NULL`, f.args()...).
		Scan(&undecodable); err != nil {
		return fmt.Errorf("replay: read the dead letters: %w", err)
	}
	if undecodable > 0 {
		return fmt.Errorf("%w: %d match (`relay deadletter show` their payload, republish what they meant, then discard them)",
			ErrUndecodable, undecodable)
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT k FROM outbox_dead_letter, jsonb_object_keys(columns) k
		WHERE `+where+` AND k <> ALL($5::text[]) ORDER BY k`, append(f.args(), names)...)
	if err != nil {
		return fmt.Errorf("replay: read the dead letters' columns: %w", err)
	}
	gone, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("replay: read the dead letters' columns: %w", err)
	}
	if len(gone) > 0 {
		return fmt.Errorf("%w: %q (add them back, or discard those dead letters)", ErrColumnGone, gone)
	}
	return nil
}

// Replay moves the dead letters matching f back into outbox_event in one
// transaction, extra columns included, so the running relay streams and
// delivers them. beforeCommit (may be nil) runs after the move and before
// COMMIT; the fault tests kill the process there.
func Replay(ctx context.Context, db DB, f Filter, beforeCommit func()) ([]Moved, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	extra, err := outboxColumns(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if err := checkReplayable(ctx, tx, f, extra); err != nil {
		return nil, err
	}
	names := make([]string, len(extra))
	for i, c := range extra {
		names[i] = c.name
	}
	rows, err := tx.Query(ctx, replaySQL(extra), append(f.args(), names)...)
	if err != nil {
		return nil, fmt.Errorf("replay: move rows to outbox_event: %w", err)
	}
	moved, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Moved, error) {
		var m Moved
		return m, r.Scan(&m.ID, &m.Inserted)
	})
	if err != nil {
		return nil, fmt.Errorf("replay: move rows to outbox_event: %w", err)
	}
	if beforeCommit != nil {
		beforeCommit()
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("replay: commit: %w", err)
	}
	return moved, nil
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
