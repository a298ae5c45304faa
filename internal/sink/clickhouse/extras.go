package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
	"github.com/outbox-relay/relay/internal/topology"
)

// Evolution is what the sink does with an extra column of the outbox table
// (one beyond the relay's own) that event_log does not have.
type Evolution string

const (
	// EvolveAdd adds the column to event_log (ALTER TABLE … ADD COLUMN)
	// before the first row that carries it is inserted.
	EvolveAdd Evolution = "add"
	// EvolveFill fills only the extra columns event_log already has.
	EvolveFill Evolution = "fill"
	// EvolveRefuse stops the relay at the first extra column event_log
	// does not have.
	EvolveRefuse Evolution = "refuse"
)

// ParseEvolution reads a RELAY_SCHEMA_EVOLUTION value.
func ParseEvolution(s string) (Evolution, error) {
	switch m := Evolution(s); m {
	case EvolveAdd, EvolveFill, EvolveRefuse:
		return m, nil
	}
	return "", fmt.Errorf("%q: use add, fill or refuse", s)
}

// chColumn is an event_log column the relay does not fill itself.
type chColumn struct {
	typ  string
	kind string // default_kind: "", DEFAULT, MATERIALIZED, ALIAS
}

// extras carries the outbox table's extra columns into event_log.
//
// Each shape of the outbox table (an event.Columns, announced by a
// Relation message) is resolved once against event_log: columns are
// checked, added (EvolveAdd) or skipped (EvolveFill) before the first row
// of that shape is inserted. A batch holding several shapes is written as
// one INSERT whose columns are the union of theirs; a row of a shape
// without one of them gets NULL there (or the type's default in a
// non-Nullable column), which is what ClickHouse itself writes for a
// column an INSERT leaves out, so rows from before a column existed read
// the same whichever batch they travelled in.
type extras struct {
	mode   Evolution
	layout topology.Layout
	caps   Caps
	table  map[string]chColumn // event_log's columns beyond the relay's
	plans  map[string]*plan    // by event.Columns.Key
	last   *event.Columns      // the shape of the last event resolved
	lastP  *plan
	cols   map[string]*extraColumn // encoders by name, type and PostgreSQL type
	warned map[string]bool
	// per batch: the union of the extra columns, and where each shape's
	// columns go in it.
	union []*extraColumn
	slots map[*plan][]int
	// queries by the union's column names.
	queries map[string]string
}

// plan is how one shape's columns are written: targets[i] is the column
// for the shape's i-th extra column, nil when it is not written.
type plan struct {
	targets []*extraColumn
}

func newExtras(mode Evolution, layout topology.Layout) extras {
	return extras{mode: mode, layout: layout, table: map[string]chColumn{}, plans: map[string]*plan{},
		cols: map[string]*extraColumn{}, warned: map[string]bool{}, slots: map[*plan][]int{}, queries: map[string]string{}}
}

// resolveShapes resolves every shape of evs not seen before.
func (s *Sink) resolveShapes(ctx context.Context, evs []event.Event) error {
	x := &s.extras
	for i := range evs {
		c := evs[i].Columns
		if c == nil || c == x.last {
			continue
		}
		p, ok := x.plans[c.Key]
		if !ok {
			var err error
			if p, err = s.resolve(ctx, c); err != nil {
				return err
			}
			x.plans[c.Key] = p
		}
		x.last, x.lastP = c, p
	}
	return nil
}

// planOf returns the resolved plan of a shape.
func (x *extras) planOf(c *event.Columns) *plan {
	if c == x.last {
		return x.lastP
	}
	return x.plans[c.Key]
}

// resolve works out how a shape's columns are written, adding the missing
// ones to event_log in EvolveAdd mode.
func (s *Sink) resolve(ctx context.Context, shape *event.Columns) (*plan, error) {
	x := &s.extras
	p := &plan{targets: make([]*extraColumn, len(shape.List))}
	refreshed := false
	for i, c := range shape.List {
		if relayColumns[c.Name] {
			return nil, refusal("outbox_event.%s (%s) has the name of a column the relay fills in %s itself. Rename it in PostgreSQL "+
				"(ALTER TABLE outbox_event RENAME COLUMN %s TO …); "+reshapeAdvice,
				c.Name, PGTypeName(c), s.table, pgx.Identifier{c.Name}.Sanitize())
		}
		want, mapped := MapType(c, x.caps)
		have, exists := x.table[c.Name]
		if !exists && !refreshed && x.mode != EvolveFill {
			// Someone may have added it since the sink read the table.
			if err := s.refresh(ctx); err != nil {
				return nil, err
			}
			refreshed = true
			have, exists = x.table[c.Name]
		}
		if !exists {
			switch {
			case x.mode == EvolveFill:
				s.warnOnce(c, "outbox_event column has no column in event_log; not written (RELAY_SCHEMA_EVOLUTION=fill)")
				continue
			case !mapped:
				return nil, unmapped(c)
			case x.mode == EvolveRefuse:
				return nil, refusal("outbox_event.%s (%s) has no column in %s and RELAY_SCHEMA_EVOLUTION=refuse. Add it (ALTER TABLE %s ADD COLUMN %s %s), or run with RELAY_SCHEMA_EVOLUTION=add or fill, then restart the relay",
					c.Name, PGTypeName(c), s.table, s.table, chsql.Ident(c.Name), want)
			}
			if err := s.addColumn(ctx, c.Name, want); err != nil {
				return nil, err
			}
			if have, exists = x.table[c.Name]; !exists {
				return nil, retry.Permanent(fmt.Errorf("clickhouse: %s.%s is still missing after ALTER TABLE … ADD COLUMN", s.table, c.Name))
			}
		}
		if !mapped {
			return nil, unmapped(c)
		}
		if have.kind == "MATERIALIZED" || have.kind == "ALIAS" {
			return nil, refusal("outbox_event.%s (%s) has a %s column of the same name in %s, which cannot be written. Drop or rename one of them, then restart the relay",
				c.Name, PGTypeName(c), have.kind, s.table)
		}
		if !sameType(have.typ, want) {
			return nil, refusal("outbox_event.%s is %s, which maps to %s, but %s.%s is %s: the relay does not convert between them. "+
				"Make ClickHouse match (ALTER TABLE %s MODIFY COLUMN %s %s, if its rows convert) and restart the relay. "+
				"(Changing the PostgreSQL column back to a type that maps to %s is not enough by itself: the rows written since are in the WAL with the new type; "+
				"then also drop the relay's slot before the restart, which delivers the rows still in outbox_event from a snapshot; "+
				"not with RELAY_MESSAGE_PREFIX: messages exist only in the slot, so make ClickHouse match)",
				c.Name, PGTypeName(c), want, s.table, c.Name, have.typ, s.table, chsql.Ident(c.Name), want, have.typ)
		}
		col, err := x.column(c, have.typ)
		if err != nil {
			return nil, refusal("outbox_event.%s (%s) into %s.%s %s: %v", c.Name, PGTypeName(c), s.table, c.Name, have.typ, err)
		}
		p.targets[i] = col
	}
	return p, nil
}

// refusal is a schema change the relay will not apply.
func refusal(format string, args ...any) error {
	return retry.Permanent(fmt.Errorf("%w: "+format+"; nothing from this change on was acknowledged", append([]any{event.ErrSchema}, args...)...))
}

func unmapped(c event.Column) error {
	return refusal("outbox_event.%s has type %s, which the relay does not map to ClickHouse (README, \"Column mapping\"). "+
		"Change its type (ALTER TABLE outbox_event ALTER COLUMN … TYPE text USING …::text), "+
		"or leave it out of the publication (ALTER PUBLICATION … SET TABLE outbox_event (column, …), PostgreSQL 15+); "+reshapeAdvice+". "+
		"Messages (RELAY_MESSAGE_PREFIX) carry the type their publisher read: rebuild the publishers after the change; "+
		"the messages already written with it are delivered without the column under RELAY_SCHEMA_EVOLUTION=fill",
		c.Name, PGTypeName(c))
}

// reshapeAdvice is the second half of the advice for a change made in
// PostgreSQL: the WAL keeps the rows written before it in the old shape,
// so the slot must go; the outbox table still holds every row not yet
// delivered, and a new slot's snapshot delivers them in the new shape.
const reshapeAdvice = "the rows written before the change are in the WAL in the old shape, so then drop the relay's slot " +
	"(SELECT pg_drop_replication_slot('<RELAY_SLOT>')) and restart the relay: it recreates the slot and delivers every row still in " +
	"outbox_event from its snapshot (not with RELAY_MESSAGE_PREFIX: messages exist only in the slot)"

func (s *Sink) warnOnce(c event.Column, msg string) {
	if s.extras.warned[c.Name] {
		return
	}
	s.extras.warned[c.Name] = true
	s.log.Warn().Str("column", c.Name).Str("type", PGTypeName(c)).Msg(msg)
}

// column returns the encoder of a column, one per name, ClickHouse type
// and PostgreSQL type, kept from batch to batch.
func (x *extras) column(c event.Column, chType string) (*extraColumn, error) {
	key := fmt.Sprintf("%s\x00%s\x00%d", c.Name, chType, c.TypeOID)
	if col, ok := x.cols[key]; ok {
		return col, nil
	}
	enc, err := newEncoder(c.TypeOID, chType, x.caps)
	if err != nil {
		return nil, err
	}
	col := &extraColumn{name: c.Name, typ: chType, enc: enc}
	x.cols[key] = col
	return col, nil
}

// refresh rereads event_log's columns.
func (s *Sink) refresh(ctx context.Context) error {
	conn, err := Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	rows, err := conn.Query(ctx, `SELECT name, type, default_kind FROM system.columns
		WHERE database = currentDatabase() AND table = ?`, s.table)
	if err != nil {
		return classify("describe table", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, typ, kind string
		if err := rows.Scan(&name, &typ, &kind); err != nil {
			return classify("describe table", err)
		}
		if !relayColumns[name] {
			s.extras.table[name] = chColumn{typ: typ, kind: kind}
		}
	}
	return classify("describe table", rows.Err())
}

// addColumn runs ALTER TABLE … ADD COLUMN where each step of the layout
// says (on a cluster: the replicated table on one replica of every shard,
// then in sharded the Distributed table on every server) and rereads the
// table.
func (s *Sink) addColumn(ctx context.Context, name, typ string) error {
	var servers []ClusterServer
	if s.extras.layout.OnCluster() {
		var err error
		if servers, err = s.clusterServers(ctx); err != nil {
			return err
		}
	}
	return s.addColumnOn(ctx, servers, name, typ)
}

// addColumnOn is addColumn over the cluster's servers.
func (s *Sink) addColumnOn(ctx context.Context, servers []ClusterServer, name, typ string) error {
	for _, step := range addColumnSteps(s.table, s.extras.layout, name, typ, s.extras.caps) {
		var err error
		ddl, n := step.ddl, 1
		switch step.scope {
		case alterHere:
			err = s.exec(ctx, "", ddl)
		case alterPerShard:
			n, err = s.execPerShard(ctx, servers, ddl)
			if err != nil && !retry.IsPermanent(err) && ctx.Err() == nil && step.onCluster != "" {
				// The servers can reach what the relay cannot.
				s.log.Warn().Err(err).Str("ddl", step.onCluster).
					Msg("no replica of a shard answers the relay: adding the column ON CLUSTER")
				ddl, n = step.onCluster, len(servers)
				err = s.exec(ctx, "", ddl)
			}
		case alterEveryHost:
			n = len(servers)
			for _, sv := range servers {
				if err = s.exec(ctx, sv.Addr, ddl); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
		s.log.Info().Str("column", name).Str("type", typ).Str("ddl", ddl).Int("servers", n).
			Msg("added the outbox table's new column to ClickHouse")
	}
	return s.refresh(ctx)
}

// execPerShard runs ddl on one replica of every shard: the first that
// takes it; a replica that cannot be reached (or fails retryably) passes
// the ALTER on to the next one of its shard. It returns how many shards
// ran it.
func (s *Sink) execPerShard(ctx context.Context, servers []ClusterServer, ddl string) (int, error) {
	shards := 0
	for i := 0; i < len(servers); {
		j := i
		for j < len(servers) && servers[j].Shard == servers[i].Shard {
			j++
		}
		var err error
		for _, sv := range servers[i:j] {
			if err = s.exec(ctx, sv.Addr, ddl); err == nil || retry.IsPermanent(err) || ctx.Err() != nil {
				break
			}
			s.log.Warn().Err(err).Str("server", sv.Addr).Uint32("shard", sv.Shard).
				Msg("adding the column through another replica of the shard")
		}
		if err != nil {
			return shards, fmt.Errorf("shard %d: %w", servers[i].Shard, err)
		}
		shards++
		i = j
	}
	return shards, nil
}

// clusterServers reads the cluster's servers through CLICKHOUSE_URL.
func (s *Sink) clusterServers(ctx context.Context) ([]ClusterServer, error) {
	conn, err := Connect(ctx, s.dsn)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	return ClusterServers(ctx, conn, s.extras.layout.Cluster)
}

// ClusterServer is one server of a cluster, as remote_servers names it.
type ClusterServer struct {
	Shard, Replica uint32
	Addr           string // host:port of its native protocol
}

// ClusterServers reads the servers of cluster from system.clusters on the
// server conn reached, in shard and replica order.
func ClusterServers(ctx context.Context, conn driver.Conn, cluster string) ([]ClusterServer, error) {
	rows, err := conn.Query(ctx, `SELECT shard_num, replica_num, host_name, port FROM system.clusters
		WHERE cluster = ? ORDER BY shard_num, replica_num`, cluster)
	if err != nil {
		return nil, classify("read system.clusters", err)
	}
	defer rows.Close()
	var out []ClusterServer
	for rows.Next() {
		var sv ClusterServer
		var host string
		var port uint16
		if err := rows.Scan(&sv.Shard, &sv.Replica, &host, &port); err != nil {
			return nil, classify("read system.clusters", err)
		}
		sv.Addr = net.JoinHostPort(host, strconv.Itoa(int(port)))
		out = append(out, sv)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("read system.clusters", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster %q is not in the remote_servers of the server CLICKHOUSE_URL reached", cluster)
	}
	return out, nil
}

// exec runs one ALTER, on host when given (else where CLICKHOUSE_URL
// leads); "the column exists already" (a concurrent add, or one that a
// crash interrupted before the sink read the table) is success.
func (s *Sink) exec(ctx context.Context, host, ddl string) error {
	var conn driver.Conn
	var err error
	if host == "" {
		conn, err = Connect(ctx, s.dsn)
	} else {
		conn, err = ConnectHost(ctx, s.dsn, host)
	}
	if err != nil {
		return err
	}
	err = conn.Exec(ctx, ddl)
	_ = conn.Close()
	if err != nil && !columnExists(err) {
		return classify("add column", fmt.Errorf("%s: %w", ddl, err))
	}
	return nil
}

// columnExists tells whether an ADD COLUMN failed because the column is
// there already.
func columnExists(err error) bool {
	var ex *ch.Exception
	return errors.As(err, &ex) && (ex.Code == codeDuplicateColumn || ex.Code == codeIllegalColumn)
}

// ClickHouse exception codes of an ADD COLUMN that lost a race (the column
// exists already).
const (
	codeDuplicateColumn = 15
	codeIllegalColumn   = 44
)

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
func (x *extras) query(table string, own []*column, ownInputs []proto.InputColumn, cols []*extraColumn) (string, []proto.InputColumn) {
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
