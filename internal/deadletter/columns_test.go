package deadletter

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestBinaryToTextRoundTrip reads values of every type the relay carries
// in PostgreSQL's binary format (as pgoutput sends them), spells them with
// binaryToText, and asks PostgreSQL whether the text casts back to the
// same value: what a dead letter's replay does.
func TestBinaryToTextRoundTrip(t *testing.T) {
	e := testenv.NewPostgres(t)
	ctx := context.Background()
	values := []struct{ typ, lit string }{
		{"text", `'line1' || chr(10) || 'ü "q" \ ''s'''`},
		{"varchar(5)", "'abc'"}, {"char(3)", "'ab'"},
		{"smallint", "-32768"}, {"integer", "2147483647"}, {"bigint", "-9223372036854775808"},
		{"boolean", "false"}, {"real", "'3.4028235e38'"}, {"double precision", "'-2.2250738585072014e-308'"},
		{"double precision", "'NaN'"}, {"double precision", "'-Infinity'"}, {"real", "'0.1'"},
		{"numeric(20,4)", "9999999999999999.9999"}, {"numeric", "-0.000000000000000000000000000000000000000001"},
		{"numeric", "123456789012345678901234567890.123456789012345678901234567890"}, {"numeric", "'NaN'"},
		{"uuid", "'123e4567-e89b-12d3-a456-426614174000'"}, {"date", "'2024-02-29'"}, {"date", "'infinity'"},
		{"timestamp", "'2024-02-29 12:34:56.789012'"}, {"timestamp", "'0001-01-01 00:00:00'"},
		{"timestamptz", "'2024-02-29 12:34:56.789012+05:30'"}, {"timestamptz", "'-infinity'"},
		{"json", `'{"a": [1, 2, {"b": null}], "n": 1e400,  "ü": "\"x\""}'`},
		{"jsonb", `'{"k": "ü", "n": 1e400}'`},
		{"integer[]", "'{2147483647,NULL,-2147483648}'"}, {"text[]", `'{"a b",NULL,"ü","","NULL","\\"}'`},
		{"numeric(10,2)[]", "'{99999999.99,NULL}'"}, {"boolean[]", "'{t,NULL,f}'"},
		{"uuid[]", "'{ffffffff-ffff-ffff-ffff-ffffffffffff,NULL}'"}, {"date[]", "'{2106-02-07,NULL}'"},
		{"timestamptz[]", "'{\"2024-01-01 00:00:00.5+00\",NULL}'"}, {"jsonb[]", `'{"{\"a\": 1e400}",NULL}'`},
		{"json[]", `ARRAY['{"a":  1}'::json, NULL]`}, {"integer[]", "'{{1,2},{3,4}}'"}, {"text[]", "'{}'"},
	}
	m := pgtype.NewMap()
	conn, err := e.PG.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, v := range values {
		sql := "SELECT (" + v.lit + ")::" + v.typ
		res := conn.Conn().PgConn().ExecParams(ctx, sql, nil, nil, nil, []int16{pgtype.BinaryFormatCode}).Read()
		if res.Err != nil {
			t.Fatalf("%s: %v", sql, res.Err)
		}
		oid := res.FieldDescriptions[0].DataTypeOID
		text, err := binaryToText(m, oid, res.Rows[0][0])
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		// Compared as text of the value cast back: json has no equality.
		var same bool
		q := "SELECT ($1::text::" + v.typ + ")::text IS NOT DISTINCT FROM (" + v.lit + ")::" + v.typ + "::text"
		if err := conn.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol, text).Scan(&same); err != nil {
			t.Errorf("%s with %q: %v", q, text, err)
			continue
		}
		if !same {
			t.Errorf("%s %s: spelled %q, which PostgreSQL reads as another value", v.typ, v.lit, text)
		}
	}
}
