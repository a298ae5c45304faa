package outbox

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/payload"
)

func TestPublishColumnsValidation(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		cols    map[string]any
		wantErr string
	}{
		{name: "declared column", opts: []Option{WithColumns("user_id")}, cols: map[string]any{"user_id": "x"}},
		{name: "unknown column", opts: []Option{WithColumns("user_id", "amount")}, cols: map[string]any{"tenant": 1},
			wantErr: `"tenant" is not an extra column of "outbox_event" (known: amount, user_id`},
		{name: "no columns declared", cols: map[string]any{"user_id": 1}, wantErr: `"user_id" is not an extra column`},
		{name: "a relay column", opts: []Option{WithColumns("user_id")}, cols: map[string]any{"event_type": "x"},
			wantErr: `"event_type" is set by the publisher itself`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPublisher("test", tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var sql string
			ex := &fakeExecer{exec: func(s string, _ []any) (pgconn.CommandTag, error) {
				sql = s
				return pgconn.NewCommandTag("INSERT 0 1"), nil
			}}
			_, err = p.Publish(context.Background(), ex, Event{Type: "t", Context: map[string]int{}, Columns: tt.cols})
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(sql, `"user_id") VALUES ($2::uuid`) {
					t.Fatalf("Publish = %v with %q, want an INSERT with user_id", err, sql)
				}
				return
			}
			if !errors.Is(err, ErrUnknownColumn) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Publish = %v, want ErrUnknownColumn containing %q", err, tt.wantErr)
			}
		})
	}
}

// Typed columns as ColumnTypes reads them (the catalog's spellings).
var (
	colUserID = Column{name: "user_id", oid: 2950, mod: -1, typ: "uuid", base: "uuid"}
	colAmount = Column{name: "amount", oid: 1700, mod: 12<<16 | 2 + 4, typ: "numeric(12,2)", base: "numeric"}
	colTenant = Column{name: "tenant", oid: 1043, mod: 8 + 4, notNull: true, typ: "character varying(8)", base: "character varying",
		def: "'main'::character varying", lengthFunc: `"varchar"`}
	colTags = Column{name: "tags", oid: 1015, mod: 5 + 4, typ: "character varying(5)[]", base: "character varying[]",
		lengthFunc: `"varchar"`, lengthArray: true}
	colSeq = Column{name: "seq", oid: 20, mod: -1, notNull: true, typ: "bigint", base: "bigint"}
)

// In message mode every event carries every typed column: what it sets
// as a parameter in the column's type (an INSERT's length check where a
// cast would cut), else the DEFAULT, else NULL; PostgreSQL encodes them
// between the head and the context the publisher sends as arrays.
func TestPublishMessageColumns(t *testing.T) {
	p, err := NewPublisher("test", WithMessages("outbox"), WithColumnTypes(colUserID, colAmount, colTenant))
	if err != nil {
		t.Fatal(err)
	}
	var sql string
	var args []any
	ex := &fakeExecer{exec: func(s string, a []any) (pgconn.CommandTag, error) {
		sql, args = s, a
		return pgconn.NewCommandTag("SELECT 1"), nil
	}}
	_, err = p.Publish(context.Background(), ex,
		Event{Type: "a", Context: 1, Columns: map[string]any{"amount": "1.005", "tenant": "acme"}},
		Event{Type: "b", Context: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := "SELECT count(pg_logical_emit_message(true, $1::text, m.p)) FROM (VALUES " +
		`(($2::bytea[])[1] || record_send(ROW(NULL::uuid, ($4)::numeric(12,2), "varchar"(($5)::character varying, 12, false))) || ($3::bytea[])[1]), ` +
		`(($2::bytea[])[2] || record_send(ROW(NULL::uuid, NULL::numeric(12,2), "varchar"(('main'::character varying)::character varying, 12, false))) || ($3::bytea[])[2])` +
		") AS m(p)"
	if sql != want {
		t.Errorf("sql =\n%s\nwant\n%s", sql, want)
	}
	if len(args) != 5 || args[0] != "outbox" || args[3] != "1.005" || args[4] != "acme" {
		t.Fatalf("args = %v", args)
	}
	heads := args[1].([][]byte)
	f, err := payload.Decode(append(append(append([]byte{}, heads[0]...), payload.AppendValues(nil, []payload.Column{
		{TypeOID: 2950}, {TypeOID: 1700}, {TypeOID: 1043, Value: []byte("acme")}})...), args[2].([][]byte)[0]...))
	if err != nil {
		t.Fatalf("head + values + context: %v", err)
	}
	got := f.Columns()
	wantCols := []payload.Column{{Name: "user_id", TypeOID: 2950, TypeMod: -1}, {Name: "amount", TypeOID: 1700, TypeMod: 12<<16 | 2 + 4},
		{Name: "tenant", TypeOID: 1043, TypeMod: 12, NotNull: true}}
	if len(got) != len(wantCols) {
		t.Fatalf("columns = %+v, want %+v", got, wantCols)
	}
	for i := range got {
		if got[i].Name != wantCols[i].Name || got[i].TypeOID != wantCols[i].TypeOID || got[i].TypeMod != wantCols[i].TypeMod || got[i].NotNull != wantCols[i].NotNull {
			t.Errorf("column %d = %+v, want %+v", i, got[i], wantCols[i])
		}
	}
	if string(f.Context) != "1" || string(f.Type) != "a" {
		t.Errorf("decoded type %q context %q", f.Type, f.Context)
	}
}

// What an INSERT would refuse and a message cannot check is refused
// before anything is sent; message mode needs the columns' types.
func TestPublishMessageColumnsRefused(t *testing.T) {
	var nilPtr *string
	tests := []struct {
		name    string
		cols    map[string]any
		err     error
		wantErr string
	}{
		{name: "NULL into NOT NULL", cols: map[string]any{"tenant": nil, "seq": 1}, err: ErrNotNull, wantErr: `"tenant" is NOT NULL and the event sets it to NULL`},
		{name: "nil pointer into NOT NULL", cols: map[string]any{"tenant": nilPtr, "seq": 1}, err: ErrNotNull, wantErr: `"tenant" is NOT NULL`},
		{name: "invalid Valuer into NOT NULL", cols: map[string]any{"seq": sql.NullInt64{}}, err: ErrNotNull, wantErr: `"seq" is NOT NULL and the event sets it to NULL`},
		{name: "NOT NULL without default left out", cols: map[string]any{"tenant": "x"}, err: ErrNotNull, wantErr: `"seq" is NOT NULL, has no default`},
		{name: "bounded array elements", cols: map[string]any{"seq": 1, "tags": []string{"a"}}, err: ErrUnknownColumn, wantErr: "cannot check the length of its elements"},
		{name: "unknown", cols: map[string]any{"seq": 1, "nope": 1}, err: ErrUnknownColumn, wantErr: `"nope" is not an extra column`},
		{name: "fine", cols: map[string]any{"seq": 1, "tenant": "x", "tags": nil}},
	}
	p, err := NewPublisher("test", WithMessages("outbox"), WithColumnTypes(colTenant, colSeq, colTags))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := &fakeExecer{exec: func(string, []any) (pgconn.CommandTag, error) { return pgconn.NewCommandTag("SELECT 1"), nil }}
			_, err := p.Publish(context.Background(), ex, Event{Type: "t", Context: 1, Columns: tt.cols})
			if tt.err == nil {
				if err != nil || ex.calls != 1 {
					t.Fatalf("Publish = %v after %d calls, want one call", err, ex.calls)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.wantErr) || ex.calls != 0 {
				t.Fatalf("Publish = %v after %d calls, want a ValidationError %v containing %q", err, ex.calls, tt.err, tt.wantErr)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		opts    []Option
		wantErr string
	}{
		{name: "names only", opts: []Option{WithMessages("o"), WithColumns("user_id")}, wantErr: `message mode needs the types of extra columns "user_id"`},
		{name: "hand-made column", opts: []Option{WithColumnTypes(Column{})}, wantErr: "not read by ColumnTypes"},
	} {
		if _, err := NewPublisher("test", tc.opts...); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: NewPublisher = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	// Table mode takes names only, and typed columns as names.
	if p, err := NewPublisher("test", WithColumns("user_id"), WithColumnTypes(colAmount)); err != nil || !p.HasColumn("amount") || !p.HasColumn("user_id") {
		t.Errorf("table mode: %v", err)
	}
}
