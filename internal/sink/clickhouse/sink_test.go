package clickhouse

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/event"
)

// check rejects, as bad content, what the table would store changed:
// a time outside the column's range (PostgreSQL's infinities too) and a
// negative metadata_version in an unsigned column.
func TestCheckRejects(t *testing.T) {
	ok := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		unsigned bool
		ev       event.Event
		wantErr  string
	}{
		{name: "in range", unsigned: true, ev: event.Event{OccurredAt: ok, MetadataVersion: 1}},
		{name: "version 0", unsigned: true, ev: event.Event{OccurredAt: ok, MetadataVersion: 0}},
		{name: "negative version, signed column", ev: event.Event{OccurredAt: ok, MetadataVersion: -1}},
		{name: "negative version, unsigned column", unsigned: true, ev: event.Event{OccurredAt: ok, MetadataVersion: -1},
			wantErr: "metadata_version -1 is outside 0..9223372036854775807"},
		{name: "infinity", ev: event.Event{OccurredAt: event.Infinity}, wantErr: "event_date_time infinity is outside"},
		{name: "-infinity", ev: event.Event{OccurredAt: event.NegInfinity}, wantErr: "event_date_time -infinity is outside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &table{name: "event_log", timeLo: time.Unix(0, 0), timeHi: time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC), versionLo: math.MinInt64, versionHi: math.MaxInt64}
			if tc.unsigned {
				s.versionLo, s.versionHi = intRange("UInt64")
			}
			err := s.check([]event.Event{tc.ev})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("check() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, event.ErrRejected) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("check() = %v, want a rejection containing %q", err, tc.wantErr)
			}
		})
	}
}
