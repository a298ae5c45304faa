package clickhouse

import (
	"encoding/binary"
	"slices"
	"strconv"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/topology"
)

func version(major, minor uint64) driver.ServerVersion {
	return driver.ServerVersion{Version: proto.Version{Major: major, Minor: minor}}
}

// numericMod is numeric(p,s)'s atttypmod.
func numericTypMod(p, s int) int32 { return int32(p<<16|s&0x7ff) + 4 }

func TestMapType(t *testing.T) {
	old, cur := CapsOf(version(18, 16)), CapsOf(version(24, 8))
	tests := []struct {
		name     string
		col      event.Column
		old, cur string // "" = no mapping
	}{
		{"text", event.Column{TypeOID: oidText}, "Nullable(String)", "Nullable(String)"},
		{"varchar not null", event.Column{TypeOID: oidVarchar, TypeMod: 24, NotNull: true}, "String", "String"},
		{"smallint", event.Column{TypeOID: oidInt2}, "Nullable(Int16)", "Nullable(Int16)"},
		{"integer", event.Column{TypeOID: oidInt4}, "Nullable(Int32)", "Nullable(Int32)"},
		{"bigint not null", event.Column{TypeOID: oidInt8, NotNull: true}, "Int64", "Int64"},
		{"boolean", event.Column{TypeOID: oidBool}, "Nullable(UInt8)", "Nullable(Bool)"},
		{"real", event.Column{TypeOID: oidFloat4}, "Nullable(Float32)", "Nullable(Float32)"},
		{"double", event.Column{TypeOID: oidFloat8}, "Nullable(Float64)", "Nullable(Float64)"},
		{"numeric(12,2)", event.Column{TypeOID: oidNumeric, TypeMod: numericTypMod(12, 2)}, "Nullable(Decimal(12, 2))", "Nullable(Decimal(12, 2))"},
		{"numeric(38,0)", event.Column{TypeOID: oidNumeric, TypeMod: numericTypMod(38, 0)}, "Nullable(Decimal(38, 0))", "Nullable(Decimal(38, 0))"},
		{"numeric(39,2) beyond Decimal128", event.Column{TypeOID: oidNumeric, TypeMod: numericTypMod(39, 2)}, "Nullable(String)", "Nullable(String)"},
		{"numeric(5,-2) negative scale", event.Column{TypeOID: oidNumeric, TypeMod: numericTypMod(5, -2)}, "Nullable(String)", "Nullable(String)"},
		{"numeric unconstrained", event.Column{TypeOID: oidNumeric, TypeMod: -1}, "Nullable(String)", "Nullable(String)"},
		{"uuid", event.Column{TypeOID: oidUUID}, "Nullable(UUID)", "Nullable(UUID)"},
		{"date", event.Column{TypeOID: oidDate}, "Nullable(Date)", "Nullable(Date)"},
		{"timestamp", event.Column{TypeOID: oidTimestamp}, "Nullable(String)", "Nullable(DateTime64(6, 'UTC'))"},
		{"timestamptz not null", event.Column{TypeOID: oidTimestamptz, NotNull: true}, "String", "DateTime64(6, 'UTC')"},
		{"json", event.Column{TypeOID: oidJSON}, "Nullable(String)", "Nullable(String)"},
		{"jsonb", event.Column{TypeOID: oidJSONB}, "Nullable(String)", "Nullable(String)"},
		{"integer[]", event.Column{TypeOID: 1007, NotNull: true}, "Array(Nullable(Int32))", "Array(Nullable(Int32))"},
		{"numeric(10,2)[]", event.Column{TypeOID: 1231, TypeMod: numericTypMod(10, 2)}, "Array(Nullable(Decimal(10, 2)))", "Array(Nullable(Decimal(10, 2)))"},
		{"timestamptz[]", event.Column{TypeOID: 1185}, "Array(Nullable(String))", "Array(Nullable(DateTime64(6, 'UTC')))"},
		{"inet: no mapping", event.Column{TypeOID: 869}, "", ""},
		{"bytea: no mapping", event.Column{TypeOID: 17}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				caps Caps
				want string
			}{{old, tt.old}, {cur, tt.cur}} {
				got, ok := MapType(tt.col, c.caps)
				if got != c.want || ok != (c.want != "") {
					t.Errorf("MapType(%+v, %+v) = %q, %v; want %q", tt.col, c.caps, got, ok, c.want)
				}
			}
		})
	}
}

func TestPGTypeName(t *testing.T) {
	for _, tt := range []struct {
		col  event.Column
		want string
	}{
		{event.Column{TypeOID: oidNumeric, TypeMod: numericTypMod(12, 2)}, "numeric(12,2)"},
		{event.Column{TypeOID: oidNumeric, TypeMod: -1}, "numeric"},
		{event.Column{TypeOID: 1185}, "timestamptz[]"},
		{event.Column{TypeOID: 869}, "inet"},
		{event.Column{TypeOID: 1041}, "inet[]"},
		{event.Column{TypeOID: 17}, "bytea"},
		{event.Column{TypeOID: 1186}, "interval"},
		// A type of the database (an enum): its name as the catalog spells it.
		{event.Column{TypeOID: 16500, TypeName: "mood"}, "mood"},
		{event.Column{TypeOID: 16500}, "type oid 16500"},
	} {
		if got := PGTypeName(tt.col); got != tt.want {
			t.Errorf("PGTypeName(%+v) = %q, want %q", tt.col, got, tt.want)
		}
	}
}

func TestSameType(t *testing.T) {
	for _, tt := range []struct {
		have, want string
		same       bool
	}{
		{"Nullable(Decimal(12, 2))", "Nullable(Decimal(12, 2))", true},
		{"Decimal(12,2)", "Nullable(Decimal(12, 2))", true},
		{"Nullable(Int64)", "Int64", true},
		{"UInt8", "Nullable(Bool)", true},
		{"Nullable(Bool)", "Nullable(UInt8)", true},
		{"Nullable(String)", "Nullable(Int64)", false},
		{"Nullable(Int32)", "Nullable(Int64)", false},
		{"Nullable(Decimal(12, 3))", "Nullable(Decimal(12, 2))", false},
		{"LowCardinality(String)", "String", false},
		{"Array(Nullable(Int32))", "Array(Int32)", false},
	} {
		if got := sameType(tt.have, tt.want); got != tt.same {
			t.Errorf("sameType(%q, %q) = %v, want %v", tt.have, tt.want, got, tt.same)
		}
	}
}

// The rendered DDL for each server generation, alone and ON CLUSTER.
func TestAddColumnDDL(t *testing.T) {
	for _, tt := range []struct {
		name    string
		v       driver.ServerVersion
		cluster string
		want    string
	}{
		{"18.16", version(18, 16), "", "ALTER TABLE `event_log` ADD COLUMN `user_id` Nullable(UUID)"},
		{"18.16 cluster", version(18, 16), "c1", "ALTER TABLE `event_log` ON CLUSTER `c1` ADD COLUMN `user_id` Nullable(UUID)"},
		{"24.8", version(24, 8), "", "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `user_id` Nullable(UUID)"},
		{"24.8 cluster", version(24, 8), "prod", "ALTER TABLE `event_log` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS `user_id` Nullable(UUID)"},
	} {
		if got := addColumnDDL("event_log", tt.cluster, "user_id", "Nullable(UUID)", CapsOf(tt.v)); got != tt.want {
			t.Errorf("%s: %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

// pgNumeric encodes digits (base 10000) as numeric_send does.
func pgNumeric(weight int16, sign uint16, dscale uint16, digits ...uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(digits)))
	b = binary.BigEndian.AppendUint16(b, uint16(weight))
	b = binary.BigEndian.AppendUint16(b, sign)
	b = binary.BigEndian.AppendUint16(b, dscale)
	for _, d := range digits {
		b = binary.BigEndian.AppendUint16(b, d)
	}
	return b
}

func TestNumericText(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want string
	}{
		{pgNumeric(0, 0, 0), "0"},
		{pgNumeric(0, 0, 2), "0.00"},
		{pgNumeric(0, 0, 2, 12, 3400), "12.34"},
		{pgNumeric(1, numericNeg, 0, 1, 0), "-10000"},
		{pgNumeric(-2, 0, 8, 12), "0.00000012"},
		{pgNumeric(-1, 0, 4, 1), "0.0001"},
		{pgNumeric(2, 0, 1, 12, 3456, 7890, 1000), "1234567890.1"},
		{pgNumeric(0, numericNaN, 0), "NaN"},
		{pgNumeric(0, numericPInf, 0), "Infinity"},
		{pgNumeric(0, numericNInf, 0), "-Infinity"},
	} {
		got, err := numericText(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("numericText(%v) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := numericText([]byte{0, 2, 0, 0, 0, 0, 0, 0, 0, 1}); err == nil {
		t.Error("numericText of a cut value = nil error")
	}
}

func TestScaled(t *testing.T) {
	for _, tt := range []struct {
		in      []byte
		p, s    int
		want    string
		wantErr bool
	}{
		{pgNumeric(0, 0, 2, 12, 3400), 5, 2, "1234", false},
		{pgNumeric(0, 0, 2, 12, 3400), 6, 3, "12340", false},
		{pgNumeric(0, numericNeg, 2, 12, 3400), 5, 2, "-1234", false},
		{pgNumeric(0, 0, 3, 12, 3450), 5, 2, "", true}, // 12.345: a decimal too many
		{pgNumeric(1, 0, 0, 1, 0), 4, 0, "", true},     // 10000: too many digits
		{pgNumeric(0, numericNaN, 0), 5, 2, "", true},
		{pgNumeric(4, 0, 0, 922, 3372, 368, 5477, 5807), 18, 0, "", true}, // 9223372036854775807: 19 digits
		{pgNumeric(3, numericNeg, 4, 99, 9999, 9999, 9999, 9999), 18, 4, "-999999999999999999", false},
		{pgNumeric(-1, 0, 2, 1000), 3, 2, "10", false}, // 0.1 at scale 2
		{pgNumeric(-2, 0, 8, 12), 9, 2, "", true},      // 0.00000012: decimals beyond the scale
	} {
		got, err := scaled(tt.in, tt.p, tt.s)
		if (err != nil) != tt.wantErr || (err == nil && got.String() != tt.want) {
			t.Errorf("scaled(%v, %d, %d) = %v, %v; want %s (error %v)", tt.in, tt.p, tt.s, got, err, tt.want, tt.wantErr)
		}
		// The allocation-free path for p <= 18 agrees.
		got64, err := scaled64(tt.in, tt.p, tt.s)
		if (err != nil) != tt.wantErr || (err == nil && strconv.FormatInt(got64, 10) != tt.want) {
			t.Errorf("scaled64(%v, %d, %d) = %d, %v; want %s (error %v)", tt.in, tt.p, tt.s, got64, err, tt.want, tt.wantErr)
		}
	}
}

// Sharded: the local tables first, then the Distributed table over them;
// ON CLUSTER only as the way through for a shard the relay cannot reach.
func TestAddColumnDDLsPerTopology(t *testing.T) {
	caps := CapsOf(version(24, 8))
	for _, tt := range []struct {
		layout topology.Layout
		want   []alterStep
	}{
		{topology.Layout{Topology: topology.Single}, []alterStep{{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64"}}},
		{topology.Layout{Topology: topology.Cloud}, []alterStep{{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64"}}},
		{topology.Layout{Topology: topology.Replicated, Cluster: "r"}, []alterStep{
			{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64", scope: alterPerShard,
				onCluster: "ALTER TABLE `event_log` ON CLUSTER `r` ADD COLUMN IF NOT EXISTS `a` Int64"},
		}},
		{topology.Layout{Topology: topology.Sharded, Cluster: "s"}, []alterStep{
			{ddl: "ALTER TABLE `event_log_local` ADD COLUMN IF NOT EXISTS `a` Int64", scope: alterPerShard,
				onCluster: "ALTER TABLE `event_log_local` ON CLUSTER `s` ADD COLUMN IF NOT EXISTS `a` Int64"},
			{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64", scope: alterEveryHost},
		}},
	} {
		if got := addColumnSteps("event_log", tt.layout, "a", "Int64", caps); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %+v\nwant %+v", tt.layout.Topology, got, tt.want)
		}
	}
}
