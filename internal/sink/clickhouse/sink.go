// Package clickhouse is the ClickHouse sink: it writes a batch of events to
// the event_log table in one native-protocol INSERT.
//
// The sink adapts to the table it finds (system.columns) instead of assuming
// one schema: event_date_time is DateTime64(6) on servers that have it, and
// DateTime plus event_date_time_us (the microseconds) on older ones such as
// 18.16. Columns with a DEFAULT are left to the server, so columns can be
// added to event_log over time.
//
// Reading the table's columns (and DDL elsewhere) goes through clickhouse-go;
// the INSERTs through a native-protocol connection of the sink's own that reuses its column
// buffers from batch to batch (see inserter).
//
// Write is all-or-error: a nil return means ClickHouse accepted every row.
// Rows may be written more than once (replays after a crash); event_log is a
// ReplacingMergeTree keyed by event_id so the documented read path (FINAL)
// shows each event once.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
	"github.com/outbox-relay/relay/internal/topology"
)

// Sink writes events to one ClickHouse table. WriteBatch is not safe for
// concurrent use: the relay opens a Sink per concurrent write, sharing one
// schema lock (WithSchemaLock).
type Sink struct {
	ins     *inserter
	dsn     string
	table   string
	version driver.ServerVersion
	cols    []*column
	inputs  []proto.InputColumn
	insert  string
	// timeLo, timeHi: the range of event_date_time's type (see check).
	timeLo, timeHi time.Time
	// unsignedVersion: metadata_version is unsigned (see check).
	unsignedVersion bool
	// converts: a relay column is sent in another type than the table's,
	// for the server to convert (see sentType).
	converts bool
	// relayedAt is the relayed_at of the batch being written.
	relayedAt time.Time
	// extras: the outbox table's extra columns (see extras.go).
	extras extras
	// schemaLock serialises the columns' checks and ALTERs among the
	// sinks of one relay (nil: this sink alone).
	schemaLock *sync.Mutex
	log        zerolog.Logger
}

// Option changes how Open sets up the sink.
type Option func(*options)

// options are what the Options set.
type options struct {
	insertSettings map[string]int
	evolution      Evolution
	layout         topology.Layout
	schemaLock     *sync.Mutex
	log            zerolog.Logger
}

// WithInsertSettings adds settings to every INSERT (over any of the same
// name in the DSN): what the topology needs, e.g. insert_distributed_sync.
func WithInsertSettings(settings map[string]int) Option {
	return func(o *options) {
		if o.insertSettings == nil {
			o.insertSettings = map[string]int{}
		}
		for k, v := range settings {
			o.insertSettings[k] = v
		}
	}
}

// WithEvolution sets what the sink does with an extra column of the
// outbox table that event_log lacks (default EvolveAdd).
func WithEvolution(m Evolution) Option { return func(o *options) { o.evolution = m } }

// WithLayout says how the ClickHouse side is laid out: on a cluster a
// column is added to the replicated table on one replica of every shard,
// then (sharded) to the Distributed event_log on every server.
func WithLayout(l topology.Layout) Option { return func(o *options) { o.layout = l } }

// WithSchemaLock makes the sink check and add columns only while holding
// mu: sinks writing to the same table at once share one, so that a column
// is added once and the others see it.
func WithSchemaLock(mu *sync.Mutex) Option { return func(o *options) { o.schemaLock = mu } }

// WithLogger sets where the sink says what it changed (columns added).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// Open connects with a clickhouse-go DSN (clickhouse://user:pass@host:9000/db)
// over the native protocol and reads the table's columns; that connection
// is closed again, the inserts open their own.
func Open(ctx context.Context, dsn, table string, opts ...Option) (*Sink, error) {
	chOpts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	o := options{evolution: EvolveAdd, log: zerolog.Nop()}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.insertSettings) > 0 && chOpts.Settings == nil {
		chOpts.Settings = ch.Settings{}
	}
	for k, v := range o.insertSettings {
		chOpts.Settings[k] = v
	}
	ins, err := newInserter(chOpts)
	if err != nil {
		return nil, err
	}
	conn, err := Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	s := &Sink{ins: ins, dsn: dsn, table: table, extras: newExtras(o.evolution, o.layout), log: o.log, schemaLock: o.schemaLock}
	if err := s.describe(ctx, conn); err != nil {
		return nil, err
	}
	return s, nil
}

// Connect opens and pings a native-protocol connection.
func Connect(ctx context.Context, dsn string) (driver.Conn, error) {
	opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return connect(ctx, opts)
}

// ConnectHost is Connect to the server at addr (host:port) alone, with the
// rest of dsn (user, database, TLS, ...): to look at one replica.
func ConnectHost(ctx context.Context, dsn, addr string) (driver.Conn, error) {
	opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	opts.Addr = []string{addr}
	return connect(ctx, opts)
}

func connect(ctx context.Context, opts *ch.Options) (driver.Conn, error) {
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, classify("open", err)
	}
	if err := conn.Ping(ctx); err != nil {
		_ = conn.Close()
		return nil, classify("ping", err)
	}
	return conn, nil
}

func parseDSN(dsn string) (*ch.Options, error) {
	opts, err := ch.ParseDSN(dsn)
	if err != nil {
		return nil, retry.Permanent(fmt.Errorf("parse CLICKHOUSE_URL: %w", redact(err, dsn)))
	}
	opts.Protocol = ch.Native
	if opts.DialTimeout == 0 || opts.DialTimeout > 10*time.Second {
		opts.DialTimeout = 5 * time.Second
	}
	return opts, nil
}

// redact keeps a password in the DSN out of an error message.
func redact(err error, dsn string) error {
	msg := err.Error()
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(pw), "xxxxx")
		}
	}
	return errors.New(msg)
}

// Version is the server's version, e.g. "18.16.1".
func (s *Sink) Version() string {
	v := s.version.Version
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// Close releases the insert connection.
func (s *Sink) Close() error {
	s.ins.close()
	return nil
}

// Write inserts evs in one INSERT, relayed now and without an identity.
func (s *Sink) Write(ctx context.Context, evs []event.Event) error {
	return s.WriteBatch(ctx, evs, "", time.Now())
}

// WriteBatch inserts evs in one INSERT (one block; several only where a
// column's PostgreSQL type changed inside the batch) whose identity is token
// (see dedup.go; empty: none) and whose rows' relayed_at is relayedAt
// (seconds). On error nothing may be assumed written or not written; the
// caller retries retryable errors with the same events and identity.
func (s *Sink) WriteBatch(ctx context.Context, evs []event.Event, token string, relayedAt time.Time) error {
	if len(evs) == 0 {
		return nil
	}
	if err := s.check(evs); err != nil {
		return err
	}
	if err := s.resolveShapesLocked(ctx, evs); err != nil {
		return err
	}
	s.relayedAt = relayedAt
	// One INSERT per run of events whose extra columns can share a block:
	// the whole batch but for a column whose PostgreSQL type changed
	// inside it. The runs are the same whenever the batch is rebuilt, so
	// each keeps its identity (token, then token:2, token:3, …).
	for part := 1; len(evs) > 0; part++ {
		n, cols := s.extras.run(evs)
		id := token
		if part > 1 && token != "" {
			id = fmt.Sprintf("%s:%d", token, part)
		}
		if err := s.write(ctx, evs[:n], cols, id); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

func (s *Sink) resolveShapesLocked(ctx context.Context, evs []event.Event) error {
	if s.schemaLock != nil {
		s.schemaLock.Lock()
		defer s.schemaLock.Unlock()
	}
	return s.resolveShapes(ctx, evs)
}

// write inserts evs with the relay's columns and the extra columns cols.
func (s *Sink) write(ctx context.Context, evs []event.Event, cols []*extraColumn, token string) error {
	if err := s.extras.fill(evs, cols); err != nil {
		return err
	}
	for _, c := range s.cols {
		c.fill(evs)
	}
	query, inputs := s.insert, s.inputs
	if len(cols) > 0 {
		query, inputs = s.extras.query(s.table, s.cols, s.inputs, cols)
	}
	err := s.ins.insert(ctx, query, inputs, s.insertSettings(token))
	for _, c := range s.cols {
		c.fill(nil) // let go of the events; keep the buffers
	}
	for _, c := range cols {
		c.enc.Reset()
	}
	if err != nil {
		return classify("insert", err)
	}
	return nil
}

// insertSettings are the INSERT's settings (see dedup.go), and where a
// relay column is converted by the server the conversion turned on: a
// user's profile may turn it off, and the server would then refuse every
// block with TYPE_MISMATCH, which reads as rejected events.
func (s *Sink) insertSettings(token string) []proto.Setting {
	out := insertSettings(s.version, token)
	if s.converts {
		out = append(out, proto.Setting{Key: "input_format_native_allow_types_conversion", Value: "1", Important: true})
	}
	return out
}

// check rejects events the table cannot store faithfully. The column
// encoding would wrap a DateTime outside its range, or a negative
// metadata_version into an unsigned one, silently, so it is caught here.
func (s *Sink) check(evs []event.Event) error {
	lo, hi := s.timeLo, s.timeHi
	for i := range evs {
		if t := evs[i].OccurredAt; t.Before(lo) || !t.Before(hi) {
			return retry.Permanent(fmt.Errorf("%w: event %d: event_date_time %s is outside %s..%s, the range of event_log.event_date_time",
				event.ErrRejected, i, formatTime(t), lo.Format(time.DateOnly), hi.Format(time.DateOnly)))
		}
		if v := evs[i].MetadataVersion; v < 0 && s.unsignedVersion {
			return retry.Permanent(fmt.Errorf("%w: event %d: metadata_version %d is negative, event_log.metadata_version is unsigned",
				event.ErrRejected, i, v))
		}
	}
	return nil
}

// formatTime spells PostgreSQL's infinities as PostgreSQL does.
func formatTime(t time.Time) string {
	switch {
	case t.Equal(event.Infinity):
		return "infinity"
	case t.Equal(event.NegInfinity):
		return "-infinity"
	}
	return t.Format(time.RFC3339Nano)
}

// timeRange is the range of the event_date_time column's type.
func (s *Sink) timeRange() (lo, hi time.Time) {
	for _, c := range s.cols {
		if c.name == "event_date_time" && strings.HasPrefix(c.typ, "DateTime64") {
			return time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC)
		}
	}
	return time.Unix(0, 0).UTC(), time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
}

func (s *Sink) describe(ctx context.Context, conn driver.Conn) error {
	v, err := conn.ServerVersion()
	if err != nil {
		return classify("server version", err)
	}
	s.version = *v
	s.extras.caps = CapsOf(*v)
	rows, err := conn.Query(ctx, `SELECT name, type, default_kind FROM system.columns
		WHERE database = currentDatabase() AND table = ?`, s.table)
	if err != nil {
		return classify("describe table", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, typ, defaultKind string
		if err := rows.Scan(&name, &typ, &defaultKind); err != nil {
			return classify("describe table", err)
		}
		c, ok := newColumn(name, typ)
		if ok && c.typ != typ {
			if !convertsNative(s.version) {
				return retry.Permanent(fmt.Errorf("clickhouse: %s.%s is %s: the relay writes %s there, which ClickHouse converts from 23.3 on (this server is %s); make the column %s",
					s.table, name, typ, c.typ, s.Version(), c.typ))
			}
			s.converts = true
		}
		if !ok {
			c, ok = relayedAtColumn(name, typ, &s.relayedAt)
		}
		switch {
		case ok:
			s.cols = append(s.cols, c)
			s.inputs = append(s.inputs, c.input())
		case !relayColumns[name]:
			// Filled from an extra column of the outbox table, or by the
			// server (its DEFAULT, MATERIALIZED or ALIAS expression, or its
			// type's default).
			s.extras.table[name] = chColumn{typ: typ, kind: defaultKind}
		}
	}
	if err := rows.Err(); err != nil {
		return classify("describe table", err)
	}
	if len(s.cols) == 0 {
		return retry.Permanent(fmt.Errorf("clickhouse table %s does not exist in the database of CLICKHOUSE_URL (run `relay migrate`)", s.table))
	}
	names := make([]string, len(s.cols))
	for i, c := range s.cols {
		names[i] = quoteIdent(c.name)
	}
	s.timeLo, s.timeHi = s.timeRange()
	for _, c := range s.cols {
		if c.name == "metadata_version" && strings.Contains(c.typ, "UInt") {
			s.unsignedVersion = true
		}
	}
	// 18.16 needs the explicit column list.
	s.insert = fmt.Sprintf("INSERT INTO %s (%s) VALUES", quoteIdent(s.table), strings.Join(names, ", "))
	return nil
}

func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "\\`") + "`"
}
