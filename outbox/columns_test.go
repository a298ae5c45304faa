package outbox

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
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
		{name: "message mode", opts: []Option{WithColumns("user_id"), WithMessages("outbox")}, cols: map[string]any{"user_id": 1},
			wantErr: "extra columns are for table mode"},
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
