package clickhouse_test

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// The conformance suite on the in-process ClickHouse 26 engine (see
// internal/testenv/chdb.go): the bytes the relay's inserter sends, read by
// the engine as Native data into the table `relay migrate` makes.

// pgBinary is a value already in PostgreSQL's binary format.
type pgBinary []byte

// extraCase is one extra column of the outbox table: its PostgreSQL type,
// a value per row (nil: NULL) and what the engine must hold.
type extraCase struct {
	name    string
	oid     uint32
	mod     int32
	notNull bool
	// chType, when set, is the column's type in a table made before
	// (instead of the mapping's).
	chType string
	pg     []any
	want   []any
}

// numericMod is numeric(p,s)'s type modifier.
func numericMod(p, s int32) int32 { return p<<16 | s + 4 }

// allBytes is every byte value, in order.
func allBytes() string {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}

func ts(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05.999999", s)
	if err != nil {
		panic(err)
	}
	return t
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

// rows is how many rows each case has.
const rows = 4

var fixedUUID = uuid.MustParse("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")

// extraCases covers every type of the mapping (README "Column mapping")
// with its extremes, NULL, and arrays.
func extraCases() []extraCase {
	txt := allBytes()
	return []extraCase{
		{name: "c_int2", oid: pgtype.Int2OID, pg: []any{int16(math.MinInt16), int16(math.MaxInt16), int16(0), nil},
			want: []any{int16(math.MinInt16), int16(math.MaxInt16), int16(0), nil}},
		{name: "c_int4", oid: pgtype.Int4OID, pg: []any{int32(math.MinInt32), int32(math.MaxInt32), int32(-1), nil},
			want: []any{int32(math.MinInt32), int32(math.MaxInt32), int32(-1), nil}},
		{name: "c_int8", oid: pgtype.Int8OID, pg: []any{int64(math.MinInt64), int64(math.MaxInt64), int64(1), nil},
			want: []any{int64(math.MinInt64), int64(math.MaxInt64), int64(1), nil}},
		{name: "c_int8_nn", oid: pgtype.Int8OID, notNull: true, pg: []any{int64(7), nil, int64(-7), int64(0)},
			want: []any{int64(7), int64(0), int64(-7), int64(0)}},
		{name: "c_float4", oid: pgtype.Float4OID, pg: []any{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), float32(math.SmallestNonzeroFloat32)},
			want: []any{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), float32(math.SmallestNonzeroFloat32)}},
		{name: "c_float8", oid: pgtype.Float8OID, pg: []any{math.MaxFloat64, math.Inf(-1), math.NaN(), math.SmallestNonzeroFloat64},
			want: []any{math.MaxFloat64, math.Inf(-1), math.NaN(), math.SmallestNonzeroFloat64}},
		{name: "c_bool", oid: pgtype.BoolOID, pg: []any{true, false, nil, true}, want: []any{true, false, nil, true}},
		{name: "c_bool_nn", oid: pgtype.BoolOID, notNull: true, pg: []any{true, false, nil, true}, want: []any{true, false, false, true}},
		{name: "c_bool_u8", oid: pgtype.BoolOID, chType: "Nullable(UInt8)", pg: []any{true, false, nil, true}, want: []any{uint8(1), uint8(0), nil, uint8(1)}},
		{name: "c_num_38_0", oid: pgtype.NumericOID, mod: numericMod(38, 0),
			pg:   []any{strings.Repeat("9", 38), "-" + strings.Repeat("9", 38), "0", nil},
			want: []any{dec(strings.Repeat("9", 38)), dec("-" + strings.Repeat("9", 38)), dec("0"), nil}},
		{name: "c_num_18_4", oid: pgtype.NumericOID, mod: numericMod(18, 4),
			pg:   []any{"99999999999999.9999", "-0.0001", "12.5", nil},
			want: []any{dec("99999999999999.9999"), dec("-0.0001"), dec("12.5"), nil}},
		{name: "c_num_9_2", oid: pgtype.NumericOID, mod: numericMod(9, 2),
			pg:   []any{"9999999.99", "-9999999.99", "0.5", nil},
			want: []any{dec("9999999.99"), dec("-9999999.99"), dec("0.5"), nil}},
		{name: "c_numeric", oid: pgtype.NumericOID, mod: -1,
			pg:   []any{"NaN", "-123.4500", "123456789012345678901234567890.123456789", nil},
			want: []any{"NaN", "-123.4500", "123456789012345678901234567890.123456789", nil}},
		{name: "c_uuid", oid: pgtype.UUIDOID, pg: []any{fixedUUID, uuid.Nil, nil, uuid.Max},
			want: []any{fixedUUID, uuid.Nil, nil, uuid.Max}},
		{name: "c_date", oid: pgtype.DateOID, pg: []any{ts("1970-01-01 00:00:00"), ts("2149-06-06 00:00:00"), ts("2000-02-29 00:00:00"), nil},
			want: []any{ts("1970-01-01 00:00:00"), ts("2149-06-06 00:00:00"), ts("2000-02-29 00:00:00"), nil}},
		{name: "c_ts", oid: pgtype.TimestampOID, pg: []any{ts("1925-01-01 00:00:00"), ts("2262-04-10 23:59:59.999999"), ts("2000-01-01 00:00:00.000001"), nil},
			want: []any{ts("1925-01-01 00:00:00"), ts("2262-04-10 23:59:59.999999"), ts("2000-01-01 00:00:00.000001"), nil}},
		{name: "c_tstz", oid: pgtype.TimestamptzOID, pg: []any{ts("1969-12-31 23:59:59.999999"), ts("2106-02-07 06:28:16"), nil, ts("2024-02-29 12:00:00.5")},
			want: []any{ts("1969-12-31 23:59:59.999999"), ts("2106-02-07 06:28:16"), nil, ts("2024-02-29 12:00:00.5")}},
		{name: "c_text", oid: pgtype.TextOID, pg: []any{pgBinary(txt), pgBinary(""), pgBinary("ü\t\n\\'"), nil},
			want: []any{txt, "", "ü\t\n\\'", nil}},
		{name: "c_varchar", oid: pgtype.VarcharOID, notNull: true, pg: []any{pgBinary("v"), nil, pgBinary(txt[1:]), pgBinary("")},
			want: []any{"v", "", txt[1:], ""}},
		{name: "c_bpchar", oid: pgtype.BPCharOID, pg: []any{pgBinary("ab  "), nil, pgBinary("x"), pgBinary("")},
			want: []any{"ab  ", nil, "x", ""}},
		{name: "c_json", oid: pgtype.JSONOID, pg: []any{pgBinary(`{"a": [1, "x"]}`), nil, pgBinary(`null`), pgBinary(`"\u0000"`)},
			want: []any{`{"a": [1, "x"]}`, nil, `null`, `"\u0000"`}},
		{name: "c_jsonb", oid: pgtype.JSONBOID, pg: []any{pgBinary("\x01" + `{"a": 1}`), nil, pgBinary("\x01[]"), pgBinary("\x01" + `"é"`)},
			want: []any{`{"a": 1}`, nil, `[]`, `"é"`}},
		{name: "c_int8_arr", oid: pgtype.Int8ArrayOID, pg: []any{[]*int64{ptr(int64(math.MinInt64)), nil, ptr(int64(math.MaxInt64))}, []*int64{}, nil, []*int64{ptr(int64(0))}},
			want: []any{[]any{int64(math.MinInt64), nil, int64(math.MaxInt64)}, []any{}, []any{}, []any{int64(0)}}},
		{name: "c_text_arr", oid: pgtype.TextArrayOID, pg: []any{[]*string{ptr("a"), nil, ptr(txt[1:])}, nil, []*string{}, []*string{ptr("")}},
			want: []any{[]any{"a", nil, txt[1:]}, []any{}, []any{}, []any{""}}},
		{name: "c_num_arr", oid: pgtype.NumericArrayOID, mod: numericMod(10, 2), pg: []any{[]*string{ptr("-12345678.99"), nil}, nil, []*string{}, []*string{ptr("0.01")}},
			want: []any{[]any{dec("-12345678.99"), nil}, []any{}, []any{}, []any{dec("0.01")}}},
		{name: "c_uuid_arr", oid: pgtype.UUIDArrayOID, pg: []any{[]*uuid.UUID{ptr(fixedUUID), nil}, nil, []*uuid.UUID{}, []*uuid.UUID{ptr(uuid.Max)}},
			want: []any{[]any{fixedUUID, nil}, []any{}, []any{}, []any{uuid.Max}}},
		{name: "c_bool_arr", oid: pgtype.BoolArrayOID, pg: []any{[]*bool{ptr(true), nil, ptr(false)}, nil, []*bool{}, []*bool{ptr(true)}},
			want: []any{[]any{true, nil, false}, []any{}, []any{}, []any{true}}},
		{name: "c_tstz_arr", oid: pgtype.TimestamptzArrayOID, pg: []any{[]*time.Time{ptr(ts("1925-01-01 00:00:00")), nil}, nil, []*time.Time{}, []*time.Time{ptr(ts("2262-04-10 23:59:59.999999"))}},
			want: []any{[]any{ts("1925-01-01 00:00:00"), nil}, []any{}, []any{}, []any{ts("2262-04-10 23:59:59.999999")}}},
		{name: "c_date_arr", oid: pgtype.DateArrayOID, pg: []any{[]*time.Time{ptr(ts("2149-06-06 00:00:00")), nil}, nil, []*time.Time{}, []*time.Time{ptr(ts("1970-01-01 00:00:00"))}},
			want: []any{[]any{ts("2149-06-06 00:00:00"), nil}, []any{}, []any{}, []any{ts("1970-01-01 00:00:00")}}},
	}
}

// pgEncode is v in PostgreSQL's binary format for type oid, as pgoutput
// sends it.
func pgEncode(t *testing.T, m *pgtype.Map, oid uint32, v any) (byte, []byte) {
	t.Helper()
	switch x := v.(type) {
	case nil:
		return event.KindNull, nil
	case pgBinary:
		return event.KindBinary, []byte(x)
	case string: // numeric from its text
		var n pgtype.Numeric
		if err := n.Scan(x); err != nil {
			t.Fatalf("numeric %q: %v", x, err)
		}
		v = n
	case []*string:
		if oid == pgtype.NumericArrayOID {
			ns := make([]*pgtype.Numeric, len(x))
			for i, s := range x {
				if s != nil {
					ns[i] = new(pgtype.Numeric)
					if err := ns[i].Scan(*s); err != nil {
						t.Fatal(err)
					}
				}
			}
			v = ns
		}
	}
	b, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
	if err != nil {
		t.Fatalf("encode %T for oid %d: %v", v, oid, err)
	}
	return event.KindBinary, b
}

// relayColumns are the relay's own columns of the events built by
// batchOf, with what the engine must hold (relayed_at aside).
type relayRow struct {
	id       uuid.UUID
	typ, env string
	at       time.Time
	context  string
	version  int64
	lsn      uint64
}

func relayRows() []relayRow {
	txt := allBytes()
	return []relayRow{
		{uuid.MustParse("00000000-0000-0000-0000-000000000001"), "user_created", "production", ts("1925-01-01 00:00:00"), txt, 0, 1},
		{uuid.Max, txt, txt, ts("2262-04-10 23:59:59.999999"), `{"user_id": 42}`, 1, math.MaxUint64},
		// A context past the inserter's chunk: sent from the event, in pieces.
		{fixedUUID, "", "", ts("1970-01-01 00:00:00.000001"), strings.Repeat(txt, (3<<20)/256) + "end", 2, 0},
		{uuid.Nil, "é", "staging", ts("2024-02-29 12:34:56.789012"), "{}", 3, 1 << 63},
	}
}

// batchOf builds the events: the relay's columns from relayRows, the
// extra columns of cases.
func batchOf(t *testing.T, cases []extraCase) []event.Event {
	t.Helper()
	m := pgtype.NewMap()
	var list []event.Column
	for _, c := range cases {
		list = append(list, event.Column{Name: c.name, TypeOID: c.oid, TypeMod: c.mod, NotNull: c.notNull})
	}
	shape := event.NewColumns(1, list)
	var evs []event.Event
	for i, r := range relayRows() {
		ev := event.Event{ID: r.id, Type: r.typ, OccurredAt: r.at, Environment: r.env, Context: []byte(r.context),
			MetadataVersion: r.version, CommitLSN: r.lsn}
		if len(cases) > 0 {
			ev.Columns = shape
			for _, c := range cases {
				kind, val := pgEncode(t, m, c.oid, c.pg[i])
				ev.Extra = event.AppendValue(ev.Extra, kind, val)
			}
		}
		evs = append(evs, ev)
	}
	return evs
}

// norm spells a value as the comparison sees it: pointers followed,
// slices element by element, floats, decimals and times exactly.
func norm(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case decimal.Decimal:
		return "dec:" + x.String()
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = norm(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return "NULL"
		}
		return norm(rv.Elem().Interface())
	case reflect.Slice:
		parts := make([]any, rv.Len())
		for i := range parts {
			parts[i] = rv.Index(i).Interface()
		}
		return norm(parts)
	}
	return fmt.Sprintf("%T:%v", v, v)
}

// migrated creates the test's database on the engine and runs `relay
// migrate` there.
func migrated(t *testing.T) (*testenv.Engine, context.Context) {
	t.Helper()
	eng := testenv.NewEngine(t)
	eng.Database(t)
	ctx := context.Background()
	if err := migrate.ClickHouse(ctx, eng.Conn(), zerolog.Nop()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return eng, ctx
}

// insert sends what EncodeBatch made to the engine.
func insert(t *testing.T, eng *testenv.Engine, sent []chsink.SentInsert) {
	t.Helper()
	for _, s := range sent {
		if _, err := eng.Query(string(s.Statement()), "TSV"); err != nil {
			t.Fatalf("the engine refused the relay's block (%s): %v", s.Query, err)
		}
	}
}

// Every mapped type, written by the relay's own encoders into the columns
// the relay's ALTER adds to the migrated event_log, read back value by
// value.
func TestConformanceNativeEveryType(t *testing.T) {
	eng, ctx := migrated(t)
	conn := eng.Conn()
	v, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	caps := chsink.CapsOf(*v)
	cases := extraCases()
	var names []string
	for _, c := range cases {
		typ, ok := chsink.MapType(event.Column{Name: c.name, TypeOID: c.oid, TypeMod: c.mod, NotNull: c.notNull}, caps)
		if !ok {
			t.Fatalf("%s: no mapping", c.name)
		}
		if c.chType != "" {
			typ = c.chType
		}
		ddl := chsink.AddColumnDDL("event_log", c.name, typ, *v)
		eng.Exec(t, ddl...)
		eng.Exec(t, ddl...) // the sink's ALTER again (a concurrent add): IF NOT EXISTS
		names = append(names, c.name)
	}
	evs := batchOf(t, cases)
	relayedAt := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sent, err := chsink.EncodeBatch(ctx, conn, "event_log", evs, "slot:0/1.0:0/1.3", relayedAt)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	insert(t, eng, sent)

	got := eng.Rows(t, "SELECT event_id, event_type, event_date_time, environment, event_context, metadata_version, commit_lsn, relayed_at, "+
		strings.Join(names, ", ")+" FROM event_log ORDER BY metadata_version")
	if len(got) != rows {
		t.Fatalf("the engine holds %d rows, want %d", len(got), rows)
	}
	for i, r := range relayRows() {
		want := []any{r.id, r.typ, r.at, r.env, r.context, uint64(r.version), r.lsn, relayedAt}
		for _, c := range cases {
			want = append(want, c.want[i])
		}
		cols := append([]string{"event_id", "event_type", "event_date_time", "environment", "event_context", "metadata_version", "commit_lsn", "relayed_at"}, names...)
		for j := range want {
			if g, w := norm(got[i][j]), norm(want[j]); g != w {
				t.Errorf("row %d %s: engine holds %s, want %s", i, cols[j], g, w)
			}
		}
	}
}

// A batch inserted twice with the relay's token is stored once (the table
// setting non_replicated_deduplication_window that `relay migrate` sets,
// and the insert_deduplication_token the sink sends); the same rows under
// another token (another batch) are stored again.
func TestConformanceDeduplication(t *testing.T) {
	eng, ctx := migrated(t)
	evs := batchOf(t, nil)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	count := func() uint64 { return eng.Rows(t, "SELECT count() FROM event_log")[0][0].(uint64) }
	for i, step := range []struct {
		token string
		want  uint64
	}{
		{"outbox:0/16B3748.0:0/16B9F00.3", rows},
		{"outbox:0/16B3748.0:0/16B9F00.3", rows}, // the replay after a crash
		{"outbox:0/16B9F00.4:0/16BA000.7", 2 * rows},
	} {
		sent, err := chsink.EncodeBatch(ctx, eng.Conn(), "event_log", evs, step.token, at)
		if err != nil {
			t.Fatal(err)
		}
		if len(sent) != 1 || !strings.Contains(string(sent[0].Statement()), "insert_deduplication_token") {
			t.Fatalf("the sink sends %d INSERTs without a deduplication token on %s", len(sent), eng.Version)
		}
		insert(t, eng, sent)
		if got := count(); got != step.want {
			t.Fatalf("insert %d (token %s): event_log holds %d rows, want %d", i+1, step.token, got, step.want)
		}
	}
}

// One batch's token into two tables (a batch split by destination): each
// table stores its part, and the replay is dropped in each. ClickHouse
// keeps what it has seen per table (docs/clickhouse-protocol.md, "One
// token, several tables"). The second table is made as a routed one is.
func TestConformanceDeduplicationPerTable(t *testing.T) {
	eng, ctx := migrated(t)
	create := migrate.EventTableCreator(topology.Layout{Topology: topology.Single}, zerolog.Nop())
	if err := create(ctx, eng.Conn(), "events_routed"); err != nil {
		t.Fatal(err)
	}
	evs := batchOf(t, nil)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const token = "outbox:0/16B3748.0:0/16B9F00.3"
	for pass := range 2 { // the second pass is the replay after a crash
		for _, table := range []string{"event_log", "events_routed"} {
			sent, err := chsink.EncodeBatch(ctx, eng.Conn(), table, evs, token, at)
			if err != nil {
				t.Fatal(err)
			}
			insert(t, eng, sent)
			if got := eng.Rows(t, "SELECT count() FROM "+table)[0][0].(uint64); got != rows {
				t.Fatalf("pass %d: %s holds %d rows, want %d", pass+1, table, got, rows)
			}
		}
	}
}

// Tables users already have on current servers: the relay's columns in
// the types people choose (LowCardinality, JSON, DateTime64(3), Nullable)
// receive the relay's values.
func TestConformanceUserTables(t *testing.T) {
	at := ts("2026-01-02 03:04:05.123456")
	evs := []event.Event{
		{ID: fixedUUID, Type: "user_created", OccurredAt: at, Environment: "production", Context: []byte(`{"user_id": 42}`), MetadataVersion: 1, CommitLSN: 10},
		{ID: uuid.Max, Type: "user_deleted", OccurredAt: at.Add(time.Second), Environment: "staging", Context: []byte(`{"user_id": 7, "why": "asked"}`), MetadataVersion: 2, CommitLSN: 11},
	}
	for _, tc := range []struct {
		name, columns string
		// check reads the relay's values back, one row per event in order.
		check string
		want  [][]any
		// ddl, when set, is the whole table (an application's own).
		ddl string
	}{
		{name: "original system's event_log",
			ddl: "CREATE TABLE event_log (event_type String, event_date_time DateTime64(6), environment String, event_context String, metadata_version Int32 DEFAULT 1) " +
				"ENGINE = MergeTree() PARTITION BY toYYYYMM(event_date_time) ORDER BY (event_date_time, event_type)",
			check: "SELECT event_type, toUnixTimestamp64Micro(event_date_time), environment, event_context, metadata_version FROM event_log ORDER BY event_date_time",
			want: [][]any{{"user_created", at.UnixMicro(), "production", `{"user_id": 42}`, int32(1)},
				{"user_deleted", at.Add(time.Second).UnixMicro(), "staging", `{"user_id": 7, "why": "asked"}`, int32(2)}}},
		{name: "zoned DateTime, UInt32 version, Nullable context, no relay bookkeeping",
			ddl: "CREATE TABLE event_log (event_type String, event_date_time DateTime('Europe/Berlin'), environment String, event_context Nullable(String), metadata_version UInt32) " +
				"ENGINE = MergeTree ORDER BY event_date_time",
			check: "SELECT toUnixTimestamp(event_date_time), event_context, metadata_version FROM event_log ORDER BY event_date_time",
			want:  [][]any{{uint32(at.Unix()), `{"user_id": 42}`, uint32(1)}, {uint32(at.Add(time.Second).Unix()), `{"user_id": 7, "why": "asked"}`, uint32(2)}}},
		{name: "LowCardinality type, JSON context, Nullable(Int32) version, zoned DateTime64(3)",
			ddl: "CREATE TABLE event_log (event_type LowCardinality(String), event_date_time DateTime64(3, 'Asia/Tokyo'), environment String, event_context JSON, metadata_version Nullable(Int32)) " +
				"ENGINE = MergeTree ORDER BY event_date_time",
			check: "SELECT toString(event_type), toUnixTimestamp64Milli(event_date_time), toInt64(event_context.user_id), metadata_version FROM event_log ORDER BY event_date_time",
			want:  [][]any{{"user_created", at.UnixMilli(), int64(42), int32(1)}, {"user_deleted", at.Add(time.Second).UnixMilli(), int64(7), int32(2)}}},
		{"low_cardinality",
			"event_id UUID, event_type LowCardinality(String), event_date_time DateTime64(6, 'UTC'), environment LowCardinality(Nullable(String)), event_context String, metadata_version UInt64, commit_lsn UInt64",
			"SELECT toString(event_type), toString(environment) FROM event_log ORDER BY commit_lsn",
			[][]any{{"user_created", "production"}, {"user_deleted", "staging"}}, ""},
		{"json_context",
			"event_id UUID, event_type String, event_date_time DateTime64(6, 'UTC'), environment String, event_context JSON, metadata_version UInt64, commit_lsn UInt64",
			"SELECT toInt64(event_context.user_id), toString(event_context.why) FROM event_log ORDER BY commit_lsn",
			[][]any{{int64(42), ""}, {int64(7), "asked"}}, ""},
		{"datetime64_3",
			"event_id UUID, event_type String, event_date_time DateTime64(3), environment String, event_context String, metadata_version UInt64, commit_lsn UInt64",
			"SELECT toUnixTimestamp64Milli(event_date_time) FROM event_log ORDER BY commit_lsn",
			[][]any{{at.UnixMilli()}, {at.Add(time.Second).UnixMilli()}}, ""},
		{"nullable",
			"event_id Nullable(UUID), event_type Nullable(String), event_date_time Nullable(DateTime64(6, 'UTC')), environment Nullable(String), event_context Nullable(String), metadata_version Nullable(UInt64), commit_lsn UInt64",
			"SELECT event_id, event_type, event_date_time, environment, event_context, metadata_version FROM event_log ORDER BY commit_lsn",
			[][]any{{fixedUUID, "user_created", at, "production", `{"user_id": 42}`, uint64(1)}, {uuid.Max, "user_deleted", at.Add(time.Second), "staging", `{"user_id": 7, "why": "asked"}`, uint64(2)}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := testenv.NewEngine(t)
			eng.Database(t)
			ddl := tc.ddl
			if ddl == "" {
				ddl = "CREATE TABLE event_log (" + tc.columns + ", relayed_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree(commit_lsn) ORDER BY commit_lsn"
			}
			eng.Exec(t, ddl)
			// As a user's profile may have it: the relay's INSERT turns it on.
			eng.Exec(t, "SET input_format_native_allow_types_conversion = 0")
			t.Cleanup(func() { _, _ = eng.Query("SET input_format_native_allow_types_conversion = 1", "TSV") })
			sent, err := chsink.EncodeBatch(context.Background(), eng.Conn(), "event_log", evs, "outbox:0/1.0:0/1.1", at)
			if err != nil {
				t.Fatalf("the sink refuses the table: %v", err)
			}
			insert(t, eng, sent)
			got := eng.Rows(t, tc.check)
			if len(got) != len(tc.want) {
				t.Fatalf("%d rows, want %d", len(got), len(tc.want))
			}
			for i := range got {
				for j := range got[i] {
					if g, w := norm(got[i][j]), norm(tc.want[i][j]); g != w {
						t.Errorf("row %d, column %d of %q: engine holds %s, want %s", i, j, tc.check, g, w)
					}
				}
			}
		})
	}
}

// The ALTERs that add an extra column on a cluster (no cluster runs here):
// parsed and formatted by the engine, for every mapped type.
func TestConformanceAddColumnClusterDDL(t *testing.T) {
	eng := testenv.NewEngine(t)
	v, err := eng.Conn().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []topology.Layout{{Topology: topology.Replicated, Cluster: "prod"}, {Topology: topology.Sharded, Cluster: "prod"}} {
		n := 0
		for _, c := range extraCases() {
			typ, _ := chsink.MapType(event.Column{Name: c.name, TypeOID: c.oid, TypeMod: c.mod, NotNull: c.notNull}, chsink.CapsOf(*v))
			for _, ddl := range chsink.AddColumnDDLOn(l, "event_log", c.name, typ, *v) {
				n++
				lit := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(ddl) + "'"
				if _, err := eng.Query("SELECT formatQuery("+lit+")", "TSVRaw"); err != nil {
					t.Errorf("%s: the engine does not parse %s: %v", l.Topology, ddl, err)
				}
			}
		}
		if n < 2*len(extraCases()) {
			t.Errorf("%s: %d ALTERs, want the ON CLUSTER forms too", l.Topology, n)
		}
	}
}

// Every setting the relay sends with its INSERT, in any topology, is one
// the engine knows (the relay marks them important: an unknown one fails
// the INSERT), by its name or as an alias (insert_distributed_sync is
// distributed_foreground_insert's). async_insert is among them and off.
func TestConformanceInsertSettings(t *testing.T) {
	eng, ctx := migrated(t)
	sent, err := chsink.EncodeBatch(ctx, eng.Conn(), "event_log", batchOf(t, nil), "outbox:0/1.0:0/1.3", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, s := range sent[0].Settings {
		names[s.Key] = s.Value
	}
	for _, top := range topology.All {
		for k, v := range (topology.Layout{Topology: top, Cluster: "prod"}).InsertSettings() {
			names[k] = strconv.Itoa(v)
		}
	}
	if names["async_insert"] != "0" || names["insert_deduplication_token"] == "" {
		t.Errorf("the INSERT's settings %v lack async_insert=0 or the deduplication token", names)
	}
	for k, v := range names {
		rows := eng.Rows(t, "SELECT value, alias_for FROM system.settings WHERE name = '"+k+"'")
		if len(rows) != 1 {
			t.Errorf("the engine has no setting %s", k)
			continue
		}
		t.Logf("%s = %s (the engine's default %q%s)", k, v, rows[0][0], map[bool]string{true: ", alias for " + fmt.Sprint(rows[0][1])}[rows[0][1] != ""])
		eng.Exec(t, "SELECT 1 SETTINGS "+k+" = '"+v+"'")
	}
}
