package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/config"
)

// Moved is the outcome of Replay for one event.
type Moved struct {
	ID uuid.UUID `json:"id"`
	// Stream is the stream the event was put back into; Outbox its outbox
	// table (schema.table).
	Stream string `json:"stream"`
	Outbox string `json:"outbox"`
	// Inserted is false when the outbox table already held a row with the
	// key (it is delivered from there; the dead letter is removed all the
	// same).
	Inserted bool `json:"inserted"`
}

// ErrUndecodable is returned by Replay for dead letters of messages that
// held no event: there is nothing to put back into an outbox table.
var ErrUndecodable = errors.New("dead letters of messages that held no event cannot be replayed")

// ErrColumnGone is returned by Replay for dead letters that kept a value
// of a column their outbox table no longer has: moving them would lose it.
var ErrColumnGone = errors.New("dead letters hold a column their outbox table no longer has")

// ErrStreamGone is returned by Replay for dead letters of a stream the
// relay's configuration no longer has: there is no outbox table to put
// them back into.
var ErrStreamGone = errors.New("dead letters of a stream that is not configured cannot be replayed")

// ErrNoKey is returned by Replay for dead letters without an outbox key
// (an event a logical decoding message carried, or one stored before keys
// were kept) bound for an outbox table whose key is not a uuid: the row
// would get a new key, and the event a new identity.
var ErrNoKey = errors.New("dead letters without an outbox key cannot keep their identity")

// Replay moves the dead letters matching f back into the outbox tables of
// their streams (streams are the relay's, config.Streams) in one
// transaction, under their own keys and with their extra columns, so the
// running relay streams and delivers them. It refuses the whole replay,
// moving nothing, when any selected dead letter cannot be put back as it
// was (ErrUndecodable, ErrStreamGone, ErrNoKey, ErrColumnGone).
// beforeCommit (may be nil) runs after the move and before COMMIT; the
// fault tests kill the process there.
func Replay(ctx context.Context, db DB, streams []config.Stream, f Filter, beforeCommit func()) ([]Moved, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	targets, err := replayTargets(ctx, tx, streams, f)
	if err != nil {
		return nil, err
	}
	var moved []Moved
	for _, t := range targets {
		m, err := t.move(ctx, tx, f)
		if err != nil {
			return nil, err
		}
		moved = append(moved, m...)
	}
	if beforeCommit != nil {
		beforeCommit()
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("replay: commit: %w", err)
	}
	return moved, nil
}

// replayTargets describes the outbox table of every stream f selects dead
// letters of, and checks that each of them can be put back.
func replayTargets(ctx context.Context, tx pgx.Tx, streams []config.Stream, f Filter) ([]*target, error) {
	var undecodable int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letter WHERE `+where+` AND raw IS NOT NULL`, f.args()...).
		Scan(&undecodable); err != nil {
		return nil, fmt.Errorf("replay: read the dead letters: %w", err)
	}
	if undecodable > 0 {
		return nil, fmt.Errorf("%w: %d match (`relay deadletter show` their payload, republish what they meant, then discard them)",
			ErrUndecodable, undecodable)
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT stream FROM outbox_dead_letter WHERE `+where+` ORDER BY stream`, f.args()...)
	if err != nil {
		return nil, fmt.Errorf("replay: read the dead letters' streams: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("replay: read the dead letters' streams: %w", err)
	}
	var targets []*target
	for _, name := range names {
		i := slices.IndexFunc(streams, func(s config.Stream) bool { return s.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%w: stream %q (configure it again, or `relay deadletter discard --stream %s`)", ErrStreamGone, name, name)
		}
		t, err := describeTarget(ctx, tx, streams[i])
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		if err := t.check(ctx, tx, f); err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// check refuses dead letters of t's stream that would lose their key or a
// kept column value.
func (t *target) check(ctx context.Context, tx pgx.Tx, f Filter) error {
	args := append(f.args(), t.stream.Name)
	if !t.keyUUID {
		var keyless int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letter WHERE `+where+` AND stream = $6 AND outbox_key IS NULL`,
			args...).Scan(&keyless); err != nil {
			return fmt.Errorf("replay: read the dead letters' keys: %w", err)
		}
		if keyless > 0 {
			return fmt.Errorf("%w: %d of stream %q, whose outbox table %s has key %s of type %s (discard them, or insert their events anew)",
				ErrNoKey, keyless, t.stream.Name, t.name, t.key.name, t.key.typ)
		}
	}
	names := make([]string, len(t.extra))
	for i, c := range t.extra {
		names[i] = c.name
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT k FROM outbox_dead_letter, jsonb_object_keys(columns) k
		WHERE `+where+` AND stream = $6 AND k <> ALL($7::text[]) ORDER BY k`, append(args, names)...)
	if err != nil {
		return fmt.Errorf("replay: read the dead letters' columns: %w", err)
	}
	gone, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("replay: read the dead letters' columns: %w", err)
	}
	if len(gone) > 0 {
		return fmt.Errorf("%w: %q of %s, stream %q (add them back, or discard those dead letters)", ErrColumnGone, gone, t.name, t.stream.Name)
	}
	return nil
}

// move puts the dead letters of t's stream that match f into its outbox
// table.
func (t *target) move(ctx context.Context, tx pgx.Tx, f Filter) ([]Moved, error) {
	args := append(f.args(), t.stream.Name)
	if len(t.extra) > 0 { // $7 appears only with extra columns
		names := make([]string, len(t.extra))
		for i, c := range t.extra {
			names[i] = c.name
		}
		args = append(args, names)
	}
	rows, err := tx.Query(ctx, t.replaySQL(), args...)
	if err != nil {
		return nil, fmt.Errorf("replay: move rows of stream %q to %s: %w", t.stream.Name, t.name, err)
	}
	moved, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Moved, error) {
		m := Moved{Stream: t.stream.Name, Outbox: t.name}
		return m, r.Scan(&m.ID, &m.Inserted)
	})
	if err != nil {
		return nil, fmt.Errorf("replay: move rows of stream %q to %s: %w", t.stream.Name, t.name, err)
	}
	return moved, nil
}

// replaySQL moves the rows in one statement: the DELETE and the INSERT are
// one atomic change, so a replay killed at any point either happened whole
// or not at all, and a repeated replay finds nothing left to move. The key
// is kept (the event id for a uuid key, outbox_key cast back otherwise), so
// the relay derives the same event_id and a replay of an event that did
// arrive collapses in event_log FINAL. Each extra column gets the value the
// dead letter kept, cast from its text, or the column's default where the
// dead letter has none; extra[k]'s name is parameter $7[k+1]. Columns the
// stream ignores are left to their defaults.
func (t *target) replaySQL() string {
	cols, vals := pgx.Identifier{t.key.name}.Sanitize(), t.keyValue("")
	for _, c := range t.fields {
		cols += ", " + pgx.Identifier{c.column}.Sanitize()
		vals += ", " + c.value()
	}
	for k, c := range t.extra {
		key := fmt.Sprintf("($7::text[])[%d]", k+1)
		def := "NULL"
		if c.def != nil {
			def = *c.def
		}
		cols += ", " + pgx.Identifier{c.name}.Sanitize()
		vals += fmt.Sprintf(",\n\t\tCASE WHEN columns ? %s THEN (columns ->> %s)::%s ELSE %s END", key, key, c.typ, def)
	}
	overriding := ""
	if t.overriding {
		overriding = " OVERRIDING SYSTEM VALUE"
	}
	return `WITH moved AS (
	DELETE FROM outbox_dead_letter WHERE ` + where + ` AND stream = $6
	RETURNING id, outbox_key, event_type, event_date_time, environment, event_context, metadata_version, columns
), ins AS (
	INSERT INTO ` + t.table + ` (` + cols + `)` + overriding + `
	SELECT ` + vals + `
	FROM moved
	ON CONFLICT DO NOTHING
	RETURNING ` + pgx.Identifier{t.key.name}.Sanitize() + ` AS k
)
SELECT m.id, i.k IS NOT NULL FROM moved m LEFT JOIN ins i ON i.k = ` + t.keyValue("m.") + ` ORDER BY m.id`
}

// keyValue is the key column's value from the dead letter's columns
// (prefixed with alias).
func (t *target) keyValue(alias string) string {
	if t.keyUUID {
		return alias + "id"
	}
	return "(" + alias + "outbox_key)::" + t.key.typ
}

// value is the expression that fills the column from the dead letter: an
// assignment cast (which refuses a value the column cannot hold rather
// than cutting it), except for a timestamp without time zone, which the
// relay reads as UTC.
func (c fieldColumn) value() string {
	if c.field == config.FieldEventDateTime && c.typ == "timestamp without time zone" {
		return "event_date_time AT TIME ZONE 'UTC'"
	}
	return c.field
}
