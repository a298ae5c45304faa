package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/payload"
)

// fakeExecer records calls; exec decides the result.
type fakeExecer struct {
	exec  func(sql string, args []any) (pgconn.CommandTag, error)
	calls int
}

func (f *fakeExecer) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	f.calls++
	return f.exec(sql, args)
}

// okExecer reports as many inserted rows as ids were sent.
func okExecer() *fakeExecer {
	return &fakeExecer{exec: func(_ string, args []any) (pgconn.CommandTag, error) {
		n := len(args[1].([]string))
		return pgconn.NewCommandTag("INSERT 0 " + strconv.Itoa(n)), nil
	}}
}

func TestNewPublisher(t *testing.T) {
	tests := []struct {
		name     string
		env      string
		opts     []Option
		wantErrs []string
		wantSQL  string
	}{
		{name: "defaults", env: "test", wantSQL: `INSERT INTO "outbox_event" (`},
		{name: "schema qualified", env: "test", opts: []Option{WithTable("app", "Outbox")}, wantSQL: `INSERT INTO "app"."Outbox" (`},
		{name: "hostile name is quoted", env: "test", opts: []Option{WithTable(`x"; drop table users; --`)}, wantSQL: `INSERT INTO "x""; drop table users; --" (`},
		{name: "empty env", env: " ", wantErrs: []string{"environment is empty"}},
		{
			name:     "every problem at once",
			env:      "",
			opts:     []Option{WithMaxContextBytes(0), WithTable("a", "b", "c")},
			wantErrs: []string{"environment is empty", "max context bytes", "3 parts"},
		},
		{name: "empty table", env: "test", opts: []Option{WithTable("")}, wantErrs: []string{`part "" is invalid`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPublisher(tt.env, tt.opts...)
			if len(tt.wantErrs) > 0 {
				if err == nil {
					t.Fatal("want error, got nil")
				}
				for _, want := range tt.wantErrs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("NewPublisher: %v", err)
			}
			if !strings.HasPrefix(p.insertSQL, tt.wantSQL) {
				t.Errorf("sql = %q, want prefix %q", p.insertSQL, tt.wantSQL)
			}
		})
	}
}

type unmarshalable struct{ C chan int }

func TestPublishValidation(t *testing.T) {
	valid := Event{Type: "t", Context: map[string]any{"a": 1}}
	tests := []struct {
		name      string
		events    []Event
		wantIndex int
		wantErr   error
	}{
		{name: "empty type", events: []Event{{Context: "{}"}}, wantErr: ErrEmptyType},
		{name: "blank type", events: []Event{{Type: " \t", Context: "{}"}}, wantErr: ErrEmptyType},
		{name: "nil context", events: []Event{{Type: "t"}}, wantErr: ErrInvalidContext},
		{name: "typed nil context", events: []Event{{Type: "t", Context: (*struct{})(nil)}}, wantErr: ErrInvalidContext},
		{name: "raw json null", events: []Event{{Type: "t", Context: json.RawMessage(" null ")}}, wantErr: ErrInvalidContext},
		{name: "malformed raw", events: []Event{{Type: "t", Context: json.RawMessage(`{"a":`)}}, wantErr: ErrInvalidContext},
		{name: "malformed bytes", events: []Event{{Type: "t", Context: []byte(`nope`)}}, wantErr: ErrInvalidContext},
		{name: "empty raw", events: []Event{{Type: "t", Context: json.RawMessage(nil)}}, wantErr: ErrInvalidContext},
		{name: "invalid utf8", events: []Event{{Type: "t", Context: []byte("\"\xff\"")}}, wantErr: ErrInvalidContext},
		{name: "nul escape", events: []Event{{Type: "t", Context: map[string]string{"a": "x\x00y"}}}, wantErr: ErrInvalidContext},
		{name: "unmarshalable", events: []Event{{Type: "t", Context: unmarshalable{}}}, wantErr: ErrInvalidContext},
		{name: "NaN", events: []Event{{Type: "t", Context: math.NaN()}}, wantErr: ErrInvalidContext},
		{name: "too large", events: []Event{{Type: "t", Context: strings.Repeat("x", 64)}}, wantErr: ErrContextTooLarge},
		{name: "too large raw", events: []Event{{Type: "t", Context: json.RawMessage(`"` + strings.Repeat("x", 64) + `"`)}}, wantErr: ErrContextTooLarge},
		{name: "negative version", events: []Event{{Type: "t", Context: 1, MetadataVersion: -1}}, wantErr: ErrInvalidMetadataVersion},
		{name: "reports index of first bad event", events: []Event{valid, valid, {Context: 1}, {Type: "t"}}, wantIndex: 2, wantErr: ErrEmptyType},
	}
	p, err := NewPublisher("test", WithMaxContextBytes(32))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := okExecer()
			ids, err := p.Publish(context.Background(), ex, tt.events...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err %T is not a *ValidationError", err)
			}
			if ve.Index != tt.wantIndex {
				t.Errorf("index = %d, want %d", ve.Index, tt.wantIndex)
			}
			if ids != nil || ex.calls != 0 {
				t.Errorf("ids = %v, exec calls = %d; want nothing sent", ids, ex.calls)
			}
		})
	}
}

func TestPublishAcceptsValidContexts(t *testing.T) {
	tests := []struct {
		name    string
		context any
		want    string
	}{
		{name: "raw message kept as is", context: json.RawMessage(`{"b":1, "a":2}`), want: `{"b":1, "a":2}`},
		{name: "byte slice is raw json", context: []byte(`[1,2]`), want: `[1,2]`},
		{name: "struct marshaled", context: struct {
			A string `json:"a"`
		}{A: "x"}, want: `{"a":"x"}`},
		{name: "string marshaled", context: `{}`, want: `"{}"`},
		{name: "escaped backslash before u0000 text", context: json.RawMessage(`"\\u0000"`), want: `"\\u0000"`},
		{name: "exactly at limit", context: json.RawMessage(`"` + strings.Repeat("x", 30) + `"`), want: `"` + strings.Repeat("x", 30) + `"`},
	}
	p, err := NewPublisher("test", WithMaxContextBytes(32))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := okExecer()
			var got string
			inner := ex.exec
			ex.exec = func(sql string, args []any) (pgconn.CommandTag, error) {
				got = args[4].([]string)[0]
				return inner(sql, args)
			}
			if _, err := p.Publish(context.Background(), ex, Event{Type: "t", Context: tt.context}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if got != tt.want {
				t.Errorf("context = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPublishDefaultsAndOneStatement(t *testing.T) {
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	explicitID := uuid.MustParse("3f0a3c1e-8d1b-4b57-9d8a-1a2b3c4d5e6f")
	genID := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	p, err := NewPublisher("staging")
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return fixed }
	p.newID = func() uuid.UUID { return genID }

	var args []any
	ex := okExecer()
	inner := ex.exec
	ex.exec = func(sql string, a []any) (pgconn.CommandTag, error) { args = a; return inner(sql, a) }

	occurred := time.Date(2020, 1, 2, 3, 4, 5, 999, time.UTC)
	ids, err := p.Publish(context.Background(), ex,
		Event{Type: "a", Context: 1},
		Event{ID: explicitID, Type: "b", Context: 2, OccurredAt: occurred, MetadataVersion: 7},
	)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if ex.calls != 1 {
		t.Fatalf("exec calls = %d, want 1", ex.calls)
	}
	if want := []uuid.UUID{genID, explicitID}; ids[0] != want[0] || ids[1] != want[1] {
		t.Errorf("ids = %v, want %v", ids, want)
	}
	if args[0] != "staging" {
		t.Errorf("environment = %v", args[0])
	}
	times := args[3].([]time.Time)
	if want := fixed.UTC().Truncate(time.Microsecond); !times[0].Equal(want) || times[0].Location() != time.UTC {
		t.Errorf("default time = %v, want %v UTC", times[0], want)
	}
	if want := occurred.Truncate(time.Microsecond); !times[1].Equal(want) {
		t.Errorf("explicit time = %v, want %v", times[1], want)
	}
	if got := args[5].([]int64); got[0] != 1 || got[1] != 7 {
		t.Errorf("versions = %v, want [1 7]", got)
	}
}

func TestPublishNoEventsIsNoop(t *testing.T) {
	p, err := NewPublisher("test")
	if err != nil {
		t.Fatal(err)
	}
	ex := okExecer()
	ids, err := p.Publish(context.Background(), ex)
	if err != nil || ids != nil || ex.calls != 0 {
		t.Fatalf("ids=%v err=%v calls=%d, want no-op", ids, err, ex.calls)
	}
}

func TestPublishExecErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		tag     string
		err     error
		wantErr string
	}{
		{name: "exec error wrapped", err: boom, wantErr: "outbox: insert 1 events: boom"},
		{name: "row count mismatch", tag: "INSERT 0 0", wantErr: "0 rows affected"},
	}
	p, err := NewPublisher("test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := &fakeExecer{exec: func(string, []any) (pgconn.CommandTag, error) {
				return pgconn.NewCommandTag(tt.tag), tt.err
			}}
			_, err := p.Publish(context.Background(), ex, Event{Type: "t", Context: 1})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("err does not wrap %v", tt.err)
			}
		})
	}
}

func TestPublishMessages(t *testing.T) {
	if _, err := NewPublisher("test", WithMessages("a\x00b")); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("NUL prefix: err = %v", err)
	}
	p, err := NewPublisher("staging", WithMessages("outbox"))
	if err != nil {
		t.Fatal(err)
	}
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	p.now = func() time.Time { return fixed }
	var sql string
	var args []any
	ex := &fakeExecer{exec: func(s string, a []any) (pgconn.CommandTag, error) {
		sql, args = s, a
		return pgconn.NewCommandTag("SELECT 1"), nil
	}}
	ids, err := p.Publish(context.Background(), ex,
		Event{Type: "a", Context: map[string]int{"n": 1}},
		Event{Type: "b", Context: json.RawMessage(`[2]`), MetadataVersion: 4},
	)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if ex.calls != 1 || !strings.Contains(sql, "pg_logical_emit_message(true,") || args[0] != "outbox" {
		t.Fatalf("calls %d, sql %q, prefix %v: want one transactional emit with the prefix", ex.calls, sql, args[0])
	}
	payloads := args[1].([][]byte)
	want := []struct {
		typ, context string
		version      int64
	}{{"a", `{"n":1}`, 1}, {"b", `[2]`, 4}}
	for i, w := range want {
		f, err := payload.Decode(payloads[i])
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		if uuid.UUID(f.ID) != ids[i] || string(f.Type) != w.typ || string(f.Context) != w.context ||
			f.MetadataVersion != w.version || string(f.Environment) != "staging" || f.OccurredAtMicros != fixed.UnixMicro() {
			t.Errorf("payload %d = %+v, want %+v", i, f, w)
		}
	}
}
