// Package clickhouse is the ClickHouse sink: it writes a batch of events to
// a table (event_log, another a stream names, or a routed one it creates
// on first use) in one native-protocol INSERT (more only where an extra
// column's PostgreSQL type changed inside the batch). One Sink writes any
// table of its connection's database.
//
// The sink adapts to the table it finds (system.columns) instead of assuming
// one schema: event_date_time is DateTime64(p) or DateTime (then with
// event_date_time_us for the microseconds where the table has it),
// metadata_version any of Int32, UInt32, Int64 and UInt64, a column may be
// Nullable, and on 23.3+ LowCardinality or (event_context) JSON. Columns
// the table lacks are not written (an application's own event_log may have
// no event_id, commit_lsn or relayed_at); columns with a DEFAULT are left
// to the server; the outbox table's extra columns go to the columns of
// their names, which the sink adds when missing (RELAY_SCHEMA_EVOLUTION).
//
// Reading the table's columns (and DDL) goes through clickhouse-go; the
// INSERTs through a native-protocol connection of the sink's own that
// reuses its column buffers from batch to batch (see inserter).
//
// Write is all-or-error: a nil return means ClickHouse accepted every row.
// Rows may be written more than once (replays after a crash); what a
// replay leaves visible depends on the table (guarantee.go): the relay's
// own event_log drops it (insert deduplication) or hides it through FINAL.
//
// The files, in the order a batch meets them:
//   - sink.go: Open, and Sink.WriteBatch: a batch's checks, its runs of
//     events that share one INSERT, their values and the INSERT's text;
//   - table.go: a table prepared: its columns read and checked once;
//     guarantee.go, what a replay leaves visible in it;
//   - evolution.go: each shape of the outbox table resolved against
//     the table once; mapping.go, the type mapping it follows; alter.go,
//     the ADD COLUMN it may run, over cluster.go's servers on a cluster;
//     the table's columns are read again when a shape names a column
//     they lack;
//   - relaycolumns.go: the columns the relay fills itself (event_id, ...);
//     encode.go and numeric.go: the extra columns' values, from
//     PostgreSQL's binary format into ClickHouse's columns;
//   - dedup.go: what makes a repeated INSERT of a batch a no-op;
//   - inserter.go: the INSERT's own connection, its handshake and
//     deadlines; packets.go: the packets it writes and reads;
//   - errors.go: ClickHouse's exception codes as retryable, rejected
//     (dead-lettered) or fatal;
//   - dsn.go: CLICKHOUSE_URL, and the clickhouse-go connections; tls.go,
//     the URL's TLS files (a private CA, a client certificate).
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
	"github.com/outbox-relay/relay/internal/topology"
)

// Sink writes events over one connection to any table of the database of
// CLICKHOUSE_URL. Each table is prepared once (Prepare, or its first
// WriteBatch): its columns read and checked, then kept with the table's
// own schema evolution. WriteBatch is not safe for concurrent use: the
// relay opens a Sink per concurrent write, sharing one schema lock
// (WithSchemaLock).
type Sink struct {
	ins     *inserter
	dsn     string
	version driver.ServerVersion
	caps    Caps
	opts    options
	tables  map[string]*table
	// relayedAt is the relayed_at of the batch being written.
	relayedAt time.Time
	log       zerolog.Logger
}

// table is what the sink keeps of one table: the columns the relay fills
// (and the INSERT that names them), the ranges they take, and the outbox
// table's extra columns resolved against it.
type table struct {
	s      *Sink
	name   string
	cols   []*relayColumn
	inputs []proto.InputColumn
	insert string
	// timeLo, timeHi: the range of event_date_time's type (see check).
	timeLo, timeHi time.Time
	// versionLo, versionHi: the range of metadata_version's type.
	versionLo, versionHi int64
	// converts: a relay column is sent in another type than the table's,
	// for the server to convert (see sentType).
	converts bool
	// extras: the outbox table's extra columns (see evolution.go).
	extras extras
}

// Option changes how Open sets up the sink.
type Option func(*options)

// CreateFunc creates a missing table as `relay migrate` makes one (the
// topology's DDL, IF NOT EXISTS), over conn: for a routed table, on its
// first write. internal/migrate renders it (migrate.EventTableCreator).
type CreateFunc func(ctx context.Context, conn driver.Conn, table string) error

// options are what the Options set.
type options struct {
	insertSettings map[string]int
	evolution      Evolution
	layout         topology.Layout
	schemaLock     *sync.Mutex
	create         CreateFunc
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
// outbox table that the table lacks (default EvolveAdd).
func WithEvolution(m Evolution) Option { return func(o *options) { o.evolution = m } }

// WithLayout says how the ClickHouse side is laid out: on a cluster a
// column is added to the replicated table on one replica of every shard,
// then (sharded) to the Distributed table on every server.
func WithLayout(l topology.Layout) Option { return func(o *options) { o.layout = l } }

// WithSchemaLock makes the sink check, add columns and create tables only
// while holding mu: sinks writing to the same tables at once share one,
// so that a column or a table is added once and the others see it.
func WithSchemaLock(mu *sync.Mutex) Option { return func(o *options) { o.schemaLock = mu } }

// WithCreate lets WriteBatch create a table it does not find (a routed
// table, on first use) with f. Without it a missing table is an error.
// Prepare never creates: a table named in the configuration must exist
// (`relay migrate` makes it).
func WithCreate(f CreateFunc) Option { return func(o *options) { o.create = f } }

// WithLogger sets where the sink says what it changed (columns added).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// Open connects with a clickhouse-go DSN (clickhouse://user:pass@host:9000/db)
// over the native protocol and reads the server's version; that connection
// is closed again, the inserts open their own. Tables are read when
// prepared (Prepare, or a table's first WriteBatch).
func Open(ctx context.Context, dsn string, opts ...Option) (*Sink, error) {
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
	v, err := conn.ServerVersion()
	if err != nil {
		return nil, classify("server version", err)
	}
	return &Sink{ins: ins, dsn: dsn, version: *v, caps: CapsOf(*v), opts: o, tables: map[string]*table{}, log: o.log}, nil
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

// Prepare reads table's columns and checks that the relay can write it:
// the table exists, every relay column it has is in a type the relay
// fills, and every column it requires (no DEFAULT, not Nullable) is one
// the relay fills or one of carried, the outbox table's extra columns
// (nil: not known, not checked; empty: none). A table is prepared once; WriteBatch prepares a table it has not seen
// (creating it first with WithCreate's function when it is missing).
// The error is permanent and names the table and the column.
func (s *Sink) Prepare(ctx context.Context, name string, carried []string) error {
	_, err := s.prepare(ctx, name, carried, false)
	return err
}

// prepare returns the prepared table, reading it (and creating it when
// create and WithCreate allow) the first time.
func (s *Sink) prepare(ctx context.Context, name string, carried []string, create bool) (*table, error) {
	if t, ok := s.tables[name]; ok {
		return t, nil
	}
	conn, err := Connect(ctx, s.dsn)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	t := &table{s: s, name: name, extras: newExtras(s.opts.evolution, s.opts.layout, s.caps)}
	err = t.describe(ctx, conn, carried)
	if errors.Is(err, errNoTable) && create && s.opts.create != nil {
		if err = s.createTable(ctx, conn, name); err != nil {
			return nil, err
		}
		err = t.describe(ctx, conn, carried)
	}
	if err != nil {
		return nil, err
	}
	s.tables[name] = t
	return t, nil
}

// createTable creates a missing table under the schema lock: two sinks
// meeting the same new table create it once (IF NOT EXISTS besides).
func (s *Sink) createTable(ctx context.Context, conn driver.Conn, name string) error {
	if s.opts.schemaLock != nil {
		s.opts.schemaLock.Lock()
		defer s.opts.schemaLock.Unlock()
	}
	if err := s.opts.create(ctx, conn, name); err != nil {
		return classify("create table "+name, err)
	}
	s.log.Info().Str("table", name).Msg("created the routed table in ClickHouse")
	return nil
}

// Write inserts evs into table in one INSERT, relayed now and without an
// identity.
func (s *Sink) Write(ctx context.Context, table string, evs []event.Event) error {
	return s.WriteBatch(ctx, table, evs, "", time.Now())
}

// WriteBatch inserts evs into table in one INSERT (one block; several only
// where a column's PostgreSQL type changed inside the batch) whose
// identity is token (see dedup.go; empty: none) and whose rows'
// relayed_at is relayedAt (seconds). The same token may go to several
// tables: ClickHouse deduplicates per table. On error nothing may be
// assumed written or not written; the caller retries retryable errors
// with the same events and identity.
func (s *Sink) WriteBatch(ctx context.Context, table string, evs []event.Event, token string, relayedAt time.Time) error {
	if len(evs) == 0 {
		return nil
	}
	t, err := s.prepare(ctx, table, shapeColumns(evs), true)
	if err != nil {
		return err
	}
	if err := t.check(evs); err != nil {
		return err
	}
	if err := t.resolveShapesLocked(ctx, evs); err != nil {
		return err
	}
	s.relayedAt = relayedAt
	// One INSERT per run of events whose extra columns can share a block:
	// the whole batch but for a column whose PostgreSQL type changed
	// inside it. The runs are the same whenever the batch is rebuilt, so
	// each keeps its identity (token, then token:2, token:3, …).
	for part := 1; len(evs) > 0; part++ {
		n, cols := t.extras.run(evs)
		id := token
		if part > 1 && token != "" {
			id = fmt.Sprintf("%s:%d", token, part)
		}
		if err := t.write(ctx, evs[:n], cols, id); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// shapeColumns are the names of the extra columns evs carry: what a table
// first met in a batch is checked against.
func shapeColumns(evs []event.Event) []string {
	var out []string
	var prev *event.Columns
	for i := range evs {
		c := evs[i].Columns
		if c == nil || c == prev {
			continue
		}
		prev = c
		for _, col := range c.List {
			out = append(out, col.Name)
		}
	}
	return out
}

// insertSettings are the INSERT's settings (see dedup.go), and where a
// relay column is converted by the server the conversion turned on: a
// user's profile may turn it off, and the server would then refuse every
// block with TYPE_MISMATCH, which reads as rejected events.
func (t *table) insertSettings(token string) []proto.Setting {
	out := insertSettings(t.s.version, token)
	if t.converts {
		out = append(out, proto.Setting{Key: "input_format_native_allow_types_conversion", Value: "1", Important: true})
	}
	return out
}

// check rejects events the table cannot store faithfully. The column
// encoding would wrap a DateTime outside its range, or a metadata_version
// outside its column's type, silently, so it is caught here.
func (t *table) check(evs []event.Event) error {
	lo, hi := t.timeLo, t.timeHi
	for i := range evs {
		if ts := evs[i].OccurredAt; ts.Before(lo) || !ts.Before(hi) {
			return retry.Permanent(fmt.Errorf("%w: event %d: event_date_time %s is outside %s..%s, the range of %s.event_date_time",
				event.ErrRejected, i, formatTime(ts), lo.Format(time.DateOnly), hi.Format(time.DateOnly), t.name))
		}
		if v := evs[i].MetadataVersion; v < t.versionLo || v > t.versionHi {
			return retry.Permanent(fmt.Errorf("%w: event %d: metadata_version %d is outside %d..%d, the range of %s.metadata_version",
				event.ErrRejected, i, v, t.versionLo, t.versionHi, t.name))
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

// run returns how many events from the start of evs go in one INSERT, and
// its extra columns: all of them, unless two shapes write one column name
// from different PostgreSQL types (a type change inside the batch).
func (x *extras) run(evs []event.Event) (int, []*extraColumn) {
	x.union = x.union[:0]
	clear(x.slots)
	byName := map[string]*extraColumn{}
	var prev *event.Columns
	for i := range evs {
		c := evs[i].Columns
		if c == nil || c == prev {
			continue
		}
		prev = c
		p := x.planOf(c)
		if _, done := x.slots[p]; done {
			continue
		}
		slots := make([]int, len(p.targets))
		for j, t := range p.targets {
			slots[j] = -1
			if t == nil {
				continue
			}
			if other, ok := byName[t.name]; ok && other != t {
				return i, x.union // this shape starts the next INSERT
			}
			if _, ok := byName[t.name]; !ok {
				byName[t.name] = t
				x.union = append(x.union, t)
			}
			for k, u := range x.union {
				if u == t {
					slots[j] = k
				}
			}
		}
		x.slots[p] = slots
	}
	return len(evs), x.union
}

// write inserts evs with the relay's columns and the extra columns cols.
func (t *table) write(ctx context.Context, evs []event.Event, cols []*extraColumn, token string) error {
	if err := t.extras.fill(evs, cols); err != nil {
		return err
	}
	for _, c := range t.cols {
		c.fill(evs)
	}
	query, inputs := t.insert, t.inputs
	if len(cols) > 0 {
		query, inputs = t.extras.query(t.name, t.cols, t.inputs, cols)
	}
	err := t.s.ins.insert(ctx, query, inputs, t.insertSettings(token))
	for _, c := range t.cols {
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

// fill appends every event's extra values to cols (as run returned them).
func (x *extras) fill(evs []event.Event, cols []*extraColumn) error {
	if len(cols) == 0 {
		return nil
	}
	set := make([]bool, len(cols))
	var (
		slots []int
		ev    int
	)
	// One closure for the batch (not one per event).
	add := func(j int, kind byte, val []byte) error {
		if j >= len(slots) || slots[j] < 0 {
			return nil
		}
		k := slots[j]
		set[k] = true
		if err := cols[k].enc.add(kind, val); err != nil {
			return fmt.Errorf("%w: event %d: column %s: %w", event.ErrRejected, ev, cols[k].name, err)
		}
		return nil
	}
	for i := range evs {
		clear(set)
		if evs[i].Columns != nil {
			slots, ev = x.slots[x.planOf(evs[i].Columns)], i
			if err := event.Values(evs[i].Extra, add); err != nil {
				for _, c := range cols {
					c.enc.Reset()
				}
				if !errors.Is(err, event.ErrRejected) {
					err = fmt.Errorf("%w: event %d: %w", event.ErrRejected, i, err)
				}
				return retry.Permanent(err)
			}
		}
		for k, c := range cols {
			if !set[k] {
				_ = c.enc.add(event.KindNull, nil)
			}
		}
	}
	return nil
}

// query returns the INSERT and its columns: the relay's and cols.
func (x *extras) query(table string, own []*relayColumn, ownInputs []proto.InputColumn, cols []*extraColumn) (string, []proto.InputColumn) {
	names := make([]string, 0, len(own)+len(cols))
	for _, c := range own {
		names = append(names, chsql.Ident(c.name))
	}
	for _, c := range cols {
		names = append(names, chsql.Ident(c.name))
	}
	key := strings.Join(names, ", ")
	q, ok := x.queries[key]
	if !ok {
		q = fmt.Sprintf("INSERT INTO %s (%s) VALUES", chsql.Ident(table), key)
		x.queries[key] = q
	}
	inputs := append(make([]proto.InputColumn, 0, len(ownInputs)+len(cols)), ownInputs...)
	for _, c := range cols {
		inputs = append(inputs, c.input())
	}
	return q, inputs
}

// Tables lists the tables events are written to in CLICKHOUSE_URL's
// database (no views, no local table under a Distributed one of the same
// name): a routed stream counts the ones its template made before toward
// its limit.
func (s *Sink) Tables(ctx context.Context) ([]string, error) {
	conn, err := Connect(ctx, s.dsn)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT IN ('View', 'MaterializedView')")
	if err != nil {
		return nil, classify("list tables", err)
	}
	defer func() { _ = rows.Close() }()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, classify("list tables", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("list tables", err)
	}
	all := map[string]bool{}
	for _, n := range names {
		all[n] = true
	}
	return slices.DeleteFunc(names, func(n string) bool {
		base, local := strings.CutSuffix(n, "_local")
		return local && all[base]
	}), nil
}
