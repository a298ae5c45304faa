package clickhouse

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		msg  string
		want string
	}{
		{
			name: "password in the message",
			dsn:  "clickhouse://relay:s3cret@ch:9000/default",
			msg:  `parse "clickhouse://relay:s3cret@ch:9000/default": bad`,
			want: `parse "clickhouse://relay:xxxxx@ch:9000/default": bad`,
		},
		{
			name: "every occurrence",
			dsn:  "clickhouse://relay:s3cret@ch:9000/default",
			msg:  "s3cret and s3cret again",
			want: "xxxxx and xxxxx again",
		},
		{
			name: "password not in the message",
			dsn:  "clickhouse://relay:s3cret@ch:9000/default",
			msg:  "dial timeout: invalid duration",
			want: "dial timeout: invalid duration",
		},
		{
			name: "user without password",
			dsn:  "clickhouse://relay@ch:9000/default",
			msg:  "relay@ch: bad",
			want: "relay@ch: bad",
		},
		{
			name: "empty password",
			dsn:  "clickhouse://relay:@ch:9000/default",
			msg:  "relay:@ch: bad",
			want: "relay:@ch: bad",
		},
		{
			name: "no user info",
			dsn:  "clickhouse://ch:9000/default",
			msg:  "ch:9000: bad",
			want: "ch:9000: bad",
		},
		{
			name: "not a URL",
			dsn:  "ch:9000",
			msg:  "ch:9000: bad",
			want: "ch:9000: bad",
		},
		{
			name: "password with URL-safe punctuation",
			dsn:  "clickhouse://relay:p4ss!w0rd$@ch:9000/default",
			msg:  "relay:p4ss!w0rd$@ch",
			want: "relay:xxxxx@ch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := errors.New(tt.msg)
			got := redact(orig, tt.dsn)
			if got.Error() != tt.want {
				t.Errorf("redact() = %q, want %q", got.Error(), tt.want)
			}
			// The original text must not be reachable by unwrapping.
			if errors.Unwrap(got) != nil || errors.Is(got, orig) {
				t.Error("redact() wraps the unredacted error")
			}
		})
	}
}

// url.Parse takes the last '@' of the authority as the end of the user
// info, so a password may hold a raw '@'.
func TestRedactPasswordWithAt(t *testing.T) {
	const dsn = "clickhouse://relay:pa@ssword@ch:9000/default"
	got := redact(errors.New("cannot use relay:pa@ssword@ch"), dsn)
	if strings.Contains(got.Error(), "ssword") {
		t.Errorf("redact() = %q leaks part of the password", got.Error())
	}
}

// Connect parses the DSN before it dials: a malformed DSN is a permanent
// error that names CLICKHOUSE_URL and never shows the password. No network
// is used.
func TestConnectMalformedDSN(t *testing.T) {
	const secret = "Sup3rS3cretPw"
	for _, dsn := range []string{
		"clickhouse://relay:" + secret + "@ch:port/default",
		"clickhouse://relay:" + secret + "@ch:9000/default?dial_timeout=soon",
		"clickhouse://relay:" + secret + "@ch:9000/default?max_open_conns=many",
		"clickhouse://relay:" + secret + "@ch:9000/default%zz",
	} {
		conn, err := Connect(context.Background(), dsn)
		if err == nil {
			_ = conn.Close()
			t.Errorf("Connect(%q) = nil error", strings.ReplaceAll(dsn, secret, "…"))
			continue
		}
		if !retry.IsPermanent(err) {
			t.Errorf("Connect() error %v is retryable, want permanent", err)
		}
		if !strings.Contains(err.Error(), "CLICKHOUSE_URL") {
			t.Errorf("Connect() error %q does not name CLICKHOUSE_URL", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Connect() error leaks the password: %q", err)
		}
	}
}

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
			wantErr: "metadata_version -1 is negative"},
		{name: "infinity", ev: event.Event{OccurredAt: event.Infinity}, wantErr: "event_date_time infinity is outside"},
		{name: "-infinity", ev: event.Event{OccurredAt: event.NegInfinity}, wantErr: "event_date_time -infinity is outside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sink{timeLo: time.Unix(0, 0), timeHi: time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC), unsignedVersion: tc.unsigned}
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
