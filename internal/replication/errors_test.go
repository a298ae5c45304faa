package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/retry"
)

func TestClassify(t *testing.T) {
	pgErr := func(code, msg, detail string) error {
		return fmt.Errorf("receive from slot: %w", &pgconn.PgError{Code: code, Message: msg, Detail: detail})
	}
	tests := []struct {
		name          string
		err           error
		wantNil       bool
		wantPermanent bool
		wantIs        error // also errors.Is(got, wantIs)
	}{
		{name: "nil", err: nil, wantNil: true},
		{name: "io error is retryable", err: fmt.Errorf("receive: %w", io.ErrUnexpectedEOF), wantIs: io.ErrUnexpectedEOF},
		{name: "deadline is retryable", err: context.DeadlineExceeded, wantIs: context.DeadlineExceeded},
		{
			name:   "slot active in another process",
			err:    pgErr("55006", `replication slot "outbox_relay" is active for PID 4242`, ""),
			wantIs: ErrSlotInUse,
		},
		{
			name:   "slot lost: can no longer get changes",
			err:    pgErr("55000", `can no longer get changes from replication slot "outbox_relay"`, ""),
			wantIs: ErrSlotLost,
		},
		{
			name:   "slot lost: WAL removed",
			err:    pgErr("55000", `requested WAL segment 000000010000000000000001 has already been removed`, ""),
			wantIs: ErrSlotLost,
		},
		{
			name:   "slot lost: invalidated (detail)",
			err:    pgErr("55000", `cannot read from logical replication slot "outbox_relay"`, "This slot has been invalidated because it exceeded the maximum reserved size."),
			wantIs: ErrSlotLost,
		},
		{
			name:          "other object-not-in-prerequisite-state: wal_level",
			err:           pgErr("55000", `logical decoding requires wal_level >= logical`, ""),
			wantPermanent: true,
		},
		{name: "publication does not exist", err: pgErr("42704", `publication "outbox_pub" does not exist`, ""), wantPermanent: true},
		{name: "insufficient privilege", err: pgErr("42501", "must be superuser or replication role", ""), wantPermanent: true},
		{name: "database does not exist", err: pgErr("3D000", `database "app" does not exist`, ""), wantPermanent: true},
		{name: "password authentication failed", err: pgErr("28P01", "password authentication failed", ""), wantPermanent: true},
		{name: "undefined table", err: pgErr("42P01", `relation "outbox_event" does not exist`, ""), wantPermanent: true},
		{name: "admin shutdown is retryable", err: pgErr("57P01", "terminating connection due to administrator command", "")},
		{name: "cannot connect now is retryable", err: pgErr("57P03", "the database system is starting up", "")},
		{name: "too many connections is retryable", err: pgErr("53300", "sorry, too many clients already", "")},
		{name: "connection failure is retryable", err: pgErr("08006", "connection failure", "")},
		{name: "serialization failure is retryable", err: pgErr("40001", "could not serialize access", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if tt.wantNil {
				if got != nil {
					t.Fatalf("classify() = %v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatal("classify() = nil, want an error")
			}
			if p := retry.IsPermanent(got); p != tt.wantPermanent {
				t.Errorf("IsPermanent(classify()) = %v, want %v (err: %v)", p, tt.wantPermanent, got)
			}
			// The original error stays reachable for callers and logs.
			if !errors.Is(got, tt.err) {
				t.Errorf("classify() = %v does not wrap the original error", got)
			}
			if tt.wantIs != nil && !errors.Is(got, tt.wantIs) {
				t.Errorf("errors.Is(classify(), %v) = false (err: %v)", tt.wantIs, got)
			}
			var pg *pgconn.PgError
			if errors.As(tt.err, &pg) && !errors.As(got, &pg) {
				t.Errorf("classify() hides the *pgconn.PgError")
			}
			for _, sentinel := range []error{ErrSlotInUse, ErrSlotLost} {
				if !errors.Is(tt.wantIs, sentinel) && errors.Is(got, sentinel) {
					t.Errorf("classify() = %v matches %v", got, sentinel)
				}
			}
		})
	}
}

// A PgError built from a malformed ErrorResponse may have a short or empty
// SQLSTATE; classification must not panic on it.
func TestClassifyShortCode(t *testing.T) {
	for _, code := range []string{"", "4"} {
		err := &pgconn.PgError{Code: code, Message: "odd server"}
		if got := classify(err); !errors.Is(got, err) {
			t.Errorf("classify(code %q) = %v, want it to wrap the error", code, got)
		}
	}
}
