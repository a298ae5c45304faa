package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/topology"
)

// SentInsert is one INSERT as the sink sends it: the query, its settings,
// and the Data packet's block in the Native format (the packet's code,
// table name and block info taken off: what remains is what the server's
// Native reader reads).
type SentInsert struct {
	Query    string
	Settings []proto.Setting
	Native   []byte
}

// Statement is the INSERT with its settings and the data in the Native
// format, for an engine that takes the statement as text.
func (s SentInsert) Statement() []byte {
	q := strings.TrimSuffix(s.Query, " VALUES")
	var set []string
	for _, st := range s.Settings {
		set = append(set, st.Key+" = '"+strings.ReplaceAll(st.Value, "'", `\'`)+"'")
	}
	if len(set) > 0 {
		q += " SETTINGS " + strings.Join(set, ", ")
	}
	return append([]byte(q+" FORMAT Native\n"), s.Native...)
}

// EncodeBatch runs the sink's write path for evs up to the bytes its
// inserter writes to the connection: the table read through conn (the
// sink's own system.columns query), the events checked, their shapes
// resolved against the table (every extra column must exist: adding one
// needs CLICKHOUSE_URL), the columns filled and the block encoded by the
// inserter at the revision it announces.
func EncodeBatch(ctx context.Context, conn driver.Conn, table string, evs []event.Event, token string, relayedAt time.Time) ([]SentInsert, error) {
	t, err := describeOn(ctx, conn, table, nil)
	if err != nil {
		return nil, err
	}
	if err := t.check(evs); err != nil {
		return nil, err
	}
	if err := t.resolveShapes(ctx, evs); err != nil {
		return nil, err
	}
	t.s.relayedAt = relayedAt
	var out []SentInsert
	for part := 1; len(evs) > 0; part++ {
		n, cols := t.extras.run(evs)
		id := token
		if part > 1 && token != "" {
			id = fmt.Sprintf("%s:%d", token, part)
		}
		ins, err := t.encode(evs[:n], cols, id)
		if err != nil {
			return nil, err
		}
		out = append(out, ins)
		evs = evs[n:]
	}
	return out, nil
}

// describeOn prepares table as a sink on conn would (EvolveFill: adding a
// column needs CLICKHOUSE_URL).
func describeOn(ctx context.Context, conn driver.Conn, name string, carried []string) (*table, error) {
	v, err := conn.ServerVersion()
	if err != nil {
		return nil, err
	}
	s := &Sink{version: *v, caps: CapsOf(*v), opts: options{evolution: EvolveFill, layout: topology.Layout{Topology: topology.Single}}, log: zerolog.Nop()}
	t := &table{s: s, name: name, extras: newExtras(EvolveFill, s.opts.layout, s.caps)}
	if err := t.describe(ctx, conn, carried); err != nil {
		return nil, err
	}
	return t, nil
}

// PrepareOn is Sink.Prepare on conn (a connection to the conformance
// engine): the table's columns read and checked.
func PrepareOn(ctx context.Context, conn driver.Conn, table string, carried []string) error {
	_, err := describeOn(ctx, conn, table, carried)
	return err
}

// encode is write with a connection that keeps what is written.
func (t *table) encode(evs []event.Event, cols []*extraColumn, token string) (SentInsert, error) {
	if err := t.extras.fill(evs, cols); err != nil {
		return SentInsert{}, err
	}
	for _, c := range t.cols {
		c.fill(evs)
	}
	defer func() {
		for _, c := range cols {
			c.enc.Reset()
		}
	}()
	query, inputs := t.insert, t.inputs
	if len(cols) > 0 {
		query, inputs = t.extras.query(t.name, t.cols, t.inputs, cols)
	}
	var w recorder
	in := &inserter{conn: &w, rev: insertRevision}
	if err := in.writeData(inputs, len(evs)); err != nil {
		return SentInsert{}, err
	}
	native, err := stripPacketHead(w.buf.Bytes(), in.rev)
	if err != nil {
		return SentInsert{}, err
	}
	return SentInsert{Query: query, Settings: t.insertSettings(token), Native: native}, nil
}

// stripPacketHead takes the Data packet's code, table name and block info
// off a block as the inserter writes it.
func stripPacketHead(b []byte, rev int) ([]byte, error) {
	r := proto.NewReader(bytes.NewReader(b))
	code, err := r.UVarInt()
	if err != nil || proto.ClientCode(code) != proto.ClientCodeData {
		return nil, fmt.Errorf("not a Data packet (code %d): %v", code, err)
	}
	var cd proto.ClientData
	if err := cd.DecodeAware(r, rev); err != nil {
		return nil, err
	}
	var info proto.BlockInfo
	if err := info.Decode(r); err != nil {
		return nil, err
	}
	rest := new(bytes.Buffer)
	if _, err := rest.ReadFrom(r); err != nil {
		return nil, err
	}
	return rest.Bytes(), nil
}

// recorder is a connection that keeps what is written to it.
type recorder struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) { return r.buf.Write(p) }

// AddColumnDDL is the ALTER that adds an extra column on a single server.
func AddColumnDDL(table, name, typ string, v driver.ServerVersion) []string {
	return AddColumnDDLOn(topology.Layout{Topology: topology.Single}, table, name, typ, v)
}

// AddColumnDDLOn is every ALTER the sink may run to add an extra column in
// layout (on a cluster also the ON CLUSTER forms).
func AddColumnDDLOn(l topology.Layout, table, name, typ string, v driver.ServerVersion) []string {
	var out []string
	for _, st := range addColumnSteps(table, l, name, typ, CapsOf(v)) {
		out = append(out, st.ddl)
		if st.onCluster != "" {
			out = append(out, st.onCluster)
		}
	}
	return out
}
