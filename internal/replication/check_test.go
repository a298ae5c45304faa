package replication

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/retry"
)

// fakeRow answers Scan with fixed values or an error.
type fakeRow struct {
	vals []any
	err  error
}

func (r fakeRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	for i, d := range dest {
		switch p := d.(type) {
		case *string:
			*p = r.vals[i].(string)
		case *bool:
			*p = r.vals[i].(bool)
		case *int:
			*p = r.vals[i].(int)
		}
	}
	return nil
}

// fakeDB answers the checks' queries from function fields.
type fakeDB struct {
	queryRow func(sql string, args ...any) pgx.Row
}

func (f fakeDB) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	return f.queryRow(sql, args...)
}
func (fakeDB) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errors.New("no query")
}
func (fakeDB) BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error) {
	return nil, errors.New("no tx")
}
func (fakeDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}

func TestCheck(t *testing.T) {
	cfg := Config{Publication: "outbox_pub", Outboxes: []Outbox{*defaultOutbox()}}
	tests := []struct {
		name      string
		walLevel  string
		pub       fakeRow // pubinsert
		tables    int
		wantErr   []string // every substring must appear
		permanent bool
	}{
		{name: "all good", walLevel: "logical", pub: fakeRow{vals: []any{true}}, tables: 1},
		{name: "wal_level replica", walLevel: "replica", pub: fakeRow{vals: []any{true}}, tables: 1,
			wantErr: []string{`wal_level is "replica"`, "wal_level = logical"}, permanent: true},
		{name: "publication missing and wal_level wrong, both reported", walLevel: "minimal", pub: fakeRow{err: pgx.ErrNoRows},
			wantErr: []string{"wal_level", `publication "outbox_pub" does not exist`, "relay migrate", "CREATE PUBLICATION"}, permanent: true},
		{name: "table not in publication", walLevel: "logical", pub: fakeRow{vals: []any{true}}, tables: 0,
			wantErr: []string{`does not include table public.outbox_event`, "ALTER PUBLICATION"}, permanent: true},
		{name: "publication without inserts", walLevel: "logical", pub: fakeRow{vals: []any{false}}, tables: 1,
			wantErr: []string{"does not publish inserts"}, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := fakeDB{queryRow: func(sql string, _ ...any) pgx.Row {
				switch {
				case strings.Contains(sql, "wal_level"):
					return fakeRow{vals: []any{tt.walLevel}}
				case strings.Contains(sql, "pg_publication_tables"):
					return fakeRow{vals: []any{tt.tables}}
				default:
					return tt.pub
				}
			}}
			err := Check(context.Background(), db, cfg)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check() = nil, want an error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Check() = %q, want it to contain %q", err, s)
				}
			}
			if retry.IsPermanent(err) != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", retry.IsPermanent(err), tt.permanent)
			}
		})
	}
}

// Message mode needs PostgreSQL 14's pgoutput messages option; an older
// server is refused up front, along with the other problems.
func TestCheckMessageModeVersion(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		version int
		wantErr string
	}{
		{name: "off on 13", prefix: "", version: 130011},
		{name: "on 13", prefix: "outbox", version: 130011, wantErr: "message mode (RELAY_MESSAGE_PREFIX \"outbox\") needs PostgreSQL 14 or later to stream logical decoding messages; this server is 13.11"},
		{name: "on 14", prefix: "outbox", version: 140000},
		{name: "on 15", prefix: "outbox", version: 150010},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := fakeDB{queryRow: func(sql string, _ ...any) pgx.Row {
				switch {
				case strings.Contains(sql, "server_version_num"):
					if tt.prefix == "" {
						t.Error("version read with message mode off")
					}
					return fakeRow{vals: []any{tt.version}}
				case strings.Contains(sql, "wal_level"):
					return fakeRow{vals: []any{"logical"}}
				case strings.Contains(sql, "pg_publication_tables"):
					return fakeRow{vals: []any{1}}
				default:
					return fakeRow{vals: []any{true}}
				}
			}}
			err := Check(context.Background(), db, Config{Publication: "p", Outboxes: []Outbox{*defaultOutbox()}, MessagePrefix: tt.prefix})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !retry.IsPermanent(err) {
				t.Fatalf("Check() = %v, want permanent error containing %q", err, tt.wantErr)
			}
		})
	}
}
