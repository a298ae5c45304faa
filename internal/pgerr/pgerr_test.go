package pgerr

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/retry"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"nil", nil, false},
		{"network", fmt.Errorf("delete: %w", io.ErrUnexpectedEOF), false},
		{"permission denied", &pgconn.PgError{Code: "42501"}, true},
		{"undefined table", fmt.Errorf("read: %w", &pgconn.PgError{Code: "42P01"}), true},
		{"authentication", &pgconn.PgError{Code: "28P01"}, true},
		{"no database", &pgconn.PgError{Code: "3D000"}, true},
		{"wal_level", &pgconn.PgError{Code: "55000"}, true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, false},
		{"serialization", &pgconn.PgError{Code: "40001"}, false},
		{"disk full", &pgconn.PgError{Code: "53100"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.err)
			if retry.IsPermanent(got) != tt.permanent {
				t.Fatalf("Classify(%v): permanent = %v, want %v", tt.err, retry.IsPermanent(got), tt.permanent)
			}
			if tt.err != nil && !errors.Is(got, tt.err) {
				t.Fatalf("Classify(%v) = %v lost the error it wraps", tt.err, got)
			}
		})
	}
}
