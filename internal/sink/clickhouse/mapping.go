package clickhouse

import (
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/event"
)

// PostgreSQL type OIDs of the extra columns the relay maps (pg_type.dat).
const (
	oidBool        = 16
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// arrayOf maps an array type's OID to its element's.
var arrayOf = map[uint32]uint32{
	1000: oidBool, 1005: oidInt2, 1007: oidInt4, 1016: oidInt8, 1021: oidFloat4, 1022: oidFloat8,
	1231: oidNumeric, 1009: oidText, 1015: oidVarchar, 1014: oidBpchar, 2951: oidUUID, 1182: oidDate,
	1115: oidTimestamp, 1185: oidTimestamptz, 199: oidJSON, 3807: oidJSONB,
}

// pgTypeNames spells the mapped types for messages and `relay status`.
var pgTypeNames = map[uint32]string{
	oidBool: "boolean", oidInt2: "smallint", oidInt4: "integer", oidInt8: "bigint",
	oidFloat4: "real", oidFloat8: "double precision", oidNumeric: "numeric",
	oidText: "text", oidVarchar: "character varying", oidBpchar: "character",
	oidUUID: "uuid", oidDate: "date", oidTimestamp: "timestamp", oidTimestamptz: "timestamptz",
	oidJSON: "json", oidJSONB: "jsonb",
}

// unmappedTypeNames spells PostgreSQL's built-in types that have no
// mapping (OIDs from pg_type.dat, stable across versions), so a refusal
// names the type rather than its OID.
var unmappedTypeNames = map[uint32]string{
	17: "bytea", 1001: "bytea[]", 18: `"char"`, 1002: `"char"[]`, 19: "name", 1003: "name[]",
	26: "oid", 1028: "oid[]", 28: "xid", 1011: "xid[]", 142: "xml", 143: "xml[]",
	600: "point", 1017: "point[]", 601: "lseg", 1018: "lseg[]", 602: "path", 1019: "path[]",
	603: "box", 1020: "box[]", 604: "polygon", 1027: "polygon[]", 628: "line", 629: "line[]",
	718: "circle", 719: "circle[]", 650: "cidr", 651: "cidr[]", 869: "inet", 1041: "inet[]",
	829: "macaddr", 1040: "macaddr[]", 774: "macaddr8", 775: "macaddr8[]", 790: "money", 791: "money[]",
	1083: "time", 1183: "time[]", 1266: "timetz", 1270: "timetz[]", 1186: "interval", 1187: "interval[]",
	1560: "bit", 1561: "bit[]", 1562: "varbit", 1563: "varbit[]", 3614: "tsvector", 3643: "tsvector[]",
	3615: "tsquery", 3645: "tsquery[]", 4072: "jsonpath", 4073: "jsonpath[]", 3220: "pg_lsn", 3221: "pg_lsn[]",
	3904: "int4range", 3905: "int4range[]", 3926: "int8range", 3927: "int8range[]", 3906: "numrange", 3907: "numrange[]",
	3908: "tsrange", 3909: "tsrange[]", 3910: "tstzrange", 3911: "tstzrange[]", 3912: "daterange", 3913: "daterange[]",
}

// Caps are what a ClickHouse server's version allows in the mapping and
// its DDL.
type Caps struct {
	// DateTime64 (20.1+): timestamps keep their microseconds in a
	// DateTime64(6, 'UTC'); before, they are carried as text (String).
	DateTime64 bool
	// Bool (21.12+): boolean maps to Bool; before, to UInt8.
	Bool bool
	// AddIfNotExists (20.1+): ALTER TABLE … ADD COLUMN IF NOT EXISTS.
	AddIfNotExists bool
}

// DateMax is the last day a Date column holds: a UInt16 of days since 1970
// (2149-06-06), but servers before 20.1 format days after 2106-02-07 as
// 1970-01-01, so those take no later date.
func (c Caps) DateMax() time.Time {
	if !c.DateTime64 {
		return time.Date(2106, 2, 7, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(2149, 6, 6, 0, 0, 0, 0, time.UTC)
}

// CapsOf returns what server version v supports.
func CapsOf(v driver.ServerVersion) Caps {
	at := func(major, minor uint64) bool {
		return v.Version.Major > major || v.Version.Major == major && v.Version.Minor >= minor
	}
	return Caps{DateTime64: at(20, 1), Bool: at(21, 12), AddIfNotExists: at(20, 1)}
}

// PGTypeName spells a column's PostgreSQL type, e.g. numeric(12,2)[].
func PGTypeName(c event.Column) string {
	oid, suffix := c.TypeOID, ""
	if el, ok := arrayOf[oid]; ok {
		oid, suffix = el, "[]"
	}
	name, ok := pgTypeNames[oid]
	switch {
	case ok:
	case c.TypeName != "":
		return c.TypeName
	case unmappedTypeNames[c.TypeOID] != "":
		return unmappedTypeNames[c.TypeOID]
	default:
		return fmt.Sprintf("type oid %d", c.TypeOID)
	}
	if oid == oidNumeric {
		if p, s, ok := numericMod(c.TypeMod); ok {
			name = fmt.Sprintf("numeric(%d,%d)", p, s)
		}
	}
	return name + suffix
}

// numericMod decodes numeric's type modifier: false when unconstrained.
func numericMod(mod int32) (precision, scale int, ok bool) {
	if mod < 4 {
		return 0, 0, false
	}
	m := mod - 4
	// The scale is an 11-bit signed number since PostgreSQL 15.
	s := int(m & 0x7ff)
	if s >= 1024 {
		s -= 2048
	}
	return int(m>>16) & 0xffff, s, true
}

// MapType returns the ClickHouse type the relay gives an extra column:
// the documented mapping (README "Column mapping"). NOT NULL columns map to
// the plain type, others to Nullable(…); array elements may always be NULL,
// and ClickHouse has no Nullable(Array), so arrays are Array(Nullable(…))
// and a NULL array arrives empty. ok is false for a type with no mapping.
func MapType(c event.Column, caps Caps) (typ string, ok bool) {
	if el, isArr := arrayOf[c.TypeOID]; isArr {
		base, ok := baseType(el, c.TypeMod, caps)
		if !ok {
			return "", false
		}
		return "Array(Nullable(" + base + "))", true
	}
	base, ok := baseType(c.TypeOID, c.TypeMod, caps)
	if !ok {
		return "", false
	}
	if c.NotNull {
		return base, true
	}
	return "Nullable(" + base + ")", true
}

func baseType(oid uint32, mod int32, caps Caps) (string, bool) {
	switch oid {
	case oidBool:
		if caps.Bool {
			return "Bool", true
		}
		return "UInt8", true
	case oidInt2:
		return "Int16", true
	case oidInt4:
		return "Int32", true
	case oidInt8:
		return "Int64", true
	case oidFloat4:
		return "Float32", true
	case oidFloat8:
		return "Float64", true
	case oidNumeric:
		if p, s, ok := numericMod(mod); ok && p >= 1 && p <= 38 && s >= 0 && s <= p {
			return fmt.Sprintf("Decimal(%d, %d)", p, s), true
		}
		return "String", true // unconstrained (or beyond Decimal128): exact as text
	case oidText, oidVarchar, oidBpchar, oidJSON, oidJSONB:
		return "String", true
	case oidUUID:
		return "UUID", true
	case oidDate:
		return "Date", true
	case oidTimestamp, oidTimestamptz:
		if caps.DateTime64 {
			return "DateTime64(6, 'UTC')", true
		}
		return "String", true
	}
	return "", false
}

// SameType says whether a ClickHouse column of type have takes what the
// mapping gives as want (see sameType).
func SameType(have, want string) bool { return sameType(have, want) }

// sameType says whether a ClickHouse column of type have holds what the
// mapping gives as want. Nullability may differ (a NULL into a plain
// column is written as the type's default, as ClickHouse itself does with
// input_format_null_as_default), and a boolean may be UInt8 or Bool (a
// table made before the server had Bool).
func sameType(have, want string) bool {
	h, w := squash(have), squash(want)
	if h == w || unwrap(h, "Nullable") == unwrap(w, "Nullable") {
		return true
	}
	b := func(t string) string { return strings.ReplaceAll(t, "Bool", "UInt8") }
	return unwrap(b(h), "Nullable") == unwrap(b(w), "Nullable")
}

// squash drops the spaces servers put after commas in type arguments.
func squash(t string) string { return strings.ReplaceAll(t, " ", "") }

// unwrap returns t without an outer wrapper(…).
func unwrap(t, wrapper string) string {
	if strings.HasPrefix(t, wrapper+"(") && strings.HasSuffix(t, ")") {
		return t[len(wrapper)+1 : len(t)-1]
	}
	return t
}
