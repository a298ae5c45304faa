package clickhouse

import (
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/outbox-relay/relay/internal/event"
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
