package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/payload"
)

// Defaults used by [NewPublisher].
const (
	DefaultTable           = "outbox_event"
	DefaultMaxContextBytes = 4 << 20 // 4 MiB of encoded JSON per event
)

// Execer is the one method Publish needs. pgx.Tx, *pgx.Conn, *pgxpool.Pool and
// *pgxpool.Conn all satisfy it. Pass the transaction that holds your business
// writes: the caller owns it, and Publish never begins, commits or rolls back.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Publisher writes events to the outbox table. Build it with [NewPublisher];
// it is immutable and safe for concurrent use.
type Publisher struct {
	environment     string
	table           pgx.Identifier
	maxContextBytes int
	insertSQL       string
	// extra are the outbox table's extra columns events may set; typed
	// those declared with their types (WithColumnTypes), in order, and
	// shape their encoding in a message payload.
	extra map[string]bool
	typed []Column
	shape []byte
	// prefix, when set, switches to message mode (see WithMessages).
	prefix string
	now    func() time.Time
	newID  func() uuid.UUID
}

// Option configures a [Publisher].
type Option func(*Publisher)

// WithMaxContextBytes caps the encoded JSON size of one event's Context
// (default [DefaultMaxContextBytes]). Keep it below what the relay's batcher
// and ClickHouse accept for one row.
func WithMaxContextBytes(n int) Option {
	return func(p *Publisher) { p.maxContextBytes = n }
}

// WithTable sets the outbox table (default [DefaultTable]). Pass one name, or
// a schema and a name; each part is quoted as an identifier, so "Outbox" stays
// case-sensitive and no part is ever interpreted as SQL.
func WithTable(name ...string) Option {
	return func(p *Publisher) { p.table = pgx.Identifier(name) }
}

// WithMessages switches the publisher to message mode: Publish emits each
// event as a transactional logical decoding message with this prefix
// (pg_logical_emit_message(true, prefix, payload), PostgreSQL 14+) instead
// of inserting a row, in the wire format of package payload. The relay
// must read the same prefix (RELAY_MESSAGE_PREFIX). The table option is
// then unused. Extra columns ([Event.Columns]) need their types:
// [WithColumnTypes] with [ColumnTypes].
func WithMessages(prefix string) Option {
	return func(p *Publisher) { p.prefix = prefix }
}

// NewPublisher returns a Publisher that stamps every event with environment
// (e.g. "production"). All configuration problems are reported together.
func NewPublisher(environment string, opts ...Option) (*Publisher, error) {
	p := &Publisher{
		environment:     environment,
		table:           pgx.Identifier{DefaultTable},
		maxContextBytes: DefaultMaxContextBytes,
		now:             time.Now,
		newID:           uuid.New,
	}
	for _, opt := range opts {
		opt(p)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("outbox: new publisher: %w", err)
	}
	p.insertSQL = insertSQL(p.table)
	if p.prefix != "" && len(p.typed) > 0 {
		p.shape = payload.AppendShape(nil, p.payloadColumns())
	}
	return p, nil
}

func (p *Publisher) validate() error {
	var errs []error
	if strings.TrimSpace(p.environment) == "" {
		errs = append(errs, errors.New("environment is empty"))
	}
	if p.maxContextBytes <= 0 {
		errs = append(errs, fmt.Errorf("max context bytes must be positive, got %d", p.maxContextBytes))
	}
	if p.prefix != "" && strings.IndexByte(p.prefix, 0) >= 0 {
		errs = append(errs, errors.New("message prefix contains a NUL byte"))
	}
	if n := len(p.table); n < 1 || n > 2 {
		errs = append(errs, fmt.Errorf("table must be a name or schema and name, got %d parts", n))
	}
	for _, part := range p.table {
		if part == "" || strings.IndexByte(part, 0) >= 0 {
			errs = append(errs, fmt.Errorf("table name part %q is invalid", part))
		}
	}
	if err := p.checkTyped(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Environment is the value written to every event's environment column.
func (p *Publisher) Environment() string { return p.environment }

// insertSQL builds the one statement Publish sends. unnest turns the column
// arrays into rows, so any number of events costs one round trip; ORDER BY
// the ordinality keeps the caller's order, which is the order the relay sees.
func insertSQL(table pgx.Identifier) string {
	return "INSERT INTO " + table.Sanitize() +
		" (id, event_type, event_date_time, environment, event_context, metadata_version)" +
		" SELECT e.id, e.event_type, e.event_date_time, $1::text, e.event_context, e.metadata_version" +
		" FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::bigint[])" +
		" WITH ORDINALITY AS e(id, event_type, event_date_time, event_context, metadata_version, ord)" +
		" ORDER BY e.ord"
}

// Publish validates events and writes them with one statement on tx, the
// caller's transaction: rows of the outbox table, or in message mode
// (WithMessages) transactional logical decoding messages. It returns the
// event ids in the order given. Zero events is a no-op. A validation failure
// is a [*ValidationError] and nothing is sent; any other error comes from
// Postgres and leaves tx aborted.
func (p *Publisher) Publish(ctx context.Context, tx Execer, events ...Event) ([]uuid.UUID, error) {
	if len(events) == 0 {
		return nil, nil
	}
	cols, err := p.columns(events)
	if err != nil {
		return nil, err
	}
	if p.prefix != "" {
		return cols.ids, p.emit(ctx, tx, cols, events)
	}
	var tag pgconn.CommandTag
	if withColumns(events) {
		sql, args := p.insertWithColumns(cols, events)
		tag, err = tx.Exec(ctx, sql, args...)
	} else {
		tag, err = tx.Exec(ctx, p.insertSQL, p.environment,
			cols.wireIDs(), cols.types, cols.times, cols.contexts, cols.versions)
	}
	if err != nil {
		return nil, fmt.Errorf("outbox: insert %d events: %w", len(events), err)
	}
	if got := tag.RowsAffected(); got != int64(len(events)) {
		return nil, fmt.Errorf("outbox: insert %d events: %d rows affected", len(events), got)
	}
	return cols.ids, nil
}

// columns holds the events transposed into the statement's array parameters.
// Ids and contexts travel as text: with QueryExecModeExec or the simple
// protocol (as behind PgBouncer) pgx does not learn the parameter types and
// can only encode Go types it knows, and the casts in the statement turn the
// text into uuid and jsonb on the server.
type columns struct {
	ids      []uuid.UUID
	types    []string
	times    []time.Time
	contexts []string
	versions []int64
}

func (c columns) wireIDs() []string {
	s := make([]string, len(c.ids))
	for i, id := range c.ids {
		s[i] = id.String()
	}
	return s
}

func (p *Publisher) columns(events []Event) (columns, error) {
	n := len(events)
	c := columns{
		ids:      make([]uuid.UUID, n),
		types:    make([]string, n),
		times:    make([]time.Time, n),
		contexts: make([]string, n),
		versions: make([]int64, n),
	}
	now := p.now()
	for i, ev := range events {
		if err := p.fill(&c, i, ev, now); err != nil {
			return columns{}, &ValidationError{Index: i, Err: err}
		}
	}
	return c, nil
}

func (p *Publisher) fill(c *columns, i int, ev Event, now time.Time) error {
	if strings.TrimSpace(ev.Type) == "" {
		return ErrEmptyType
	}
	if ev.MetadataVersion < 0 {
		return fmt.Errorf("%w: %d", ErrInvalidMetadataVersion, ev.MetadataVersion)
	}
	if err := p.checkColumns(ev.Columns); err != nil {
		return err
	}
	if p.shape != nil {
		if err := p.checkMessageColumns(ev.Columns); err != nil {
			return err
		}
	}
	body, err := encodeContext(ev.Context, p.maxContextBytes)
	if err != nil {
		return err
	}
	c.ids[i] = ev.ID
	if ev.ID == uuid.Nil {
		c.ids[i] = p.newID()
	}
	at := ev.OccurredAt
	if at.IsZero() {
		at = now
	}
	c.types[i] = ev.Type
	c.times[i] = at.UTC().Truncate(time.Microsecond)
	c.contexts[i] = string(body)
	c.versions[i] = max(ev.MetadataVersion, 1)
	return nil
}

// encodeContext turns an Event.Context into JSON that Postgres' jsonb input
// will accept, so that a bad payload fails validation instead of aborting the
// caller's transaction.
func encodeContext(v any, limit int) (json.RawMessage, error) {
	var body []byte
	switch c := v.(type) {
	case nil:
		return nil, fmt.Errorf("%w: context is nil", ErrInvalidContext)
	case json.RawMessage:
		body = c
	case []byte:
		body = c
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidContext, err)
		}
		body = b
	}
	if len(body) > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrContextTooLarge, len(body), limit)
	}
	return body, checkJSON(body)
}

func checkJSON(b []byte) error {
	switch {
	case !json.Valid(b):
		return fmt.Errorf("%w: malformed", ErrInvalidContext)
	case !utf8.Valid(b):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidContext)
	case bytes.Equal(bytes.TrimSpace(b), []byte("null")):
		return fmt.Errorf("%w: context is JSON null", ErrInvalidContext)
	case hasNULEscape(b):
		return fmt.Errorf(`%w: \u0000 is not allowed in jsonb`, ErrInvalidContext)
	}
	return nil
}

// hasNULEscape reports whether valid JSON b contains the escape \u0000. In
// valid JSON every backslash starts an escape, so skipping the escaped
// character is enough to tell `\u0000` from `\\u0000`.
func hasNULEscape(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}
