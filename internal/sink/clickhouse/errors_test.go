package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outbox-relay/relay/internal/retry"
)

func TestClassify(t *testing.T) {
	ex := func(code int32, name string) error {
		return &ch.Exception{Code: code, Name: name, Message: name + ": something"}
	}
	tests := []struct {
		name          string
		err           error
		wantPermanent bool
	}{
		{name: "EOF (no exception) is retryable", err: io.EOF},
		{name: "context deadline is retryable", err: context.DeadlineExceeded},
		{name: "UNEXPECTED_END_OF_FILE", err: ex(3, "DB::Exception")},
		{name: "TIMEOUT_EXCEEDED", err: ex(159, "DB::Exception")},
		{name: "TOO_MANY_SIMULTANEOUS_QUERIES", err: ex(202, "DB::Exception")},
		{name: "SOCKET_TIMEOUT", err: ex(209, "DB::NetException")},
		{name: "NETWORK_ERROR", err: ex(210, "DB::NetException")},
		{name: "MEMORY_LIMIT_EXCEEDED", err: ex(241, "DB::Exception")},
		{name: "TABLE_IS_READ_ONLY", err: ex(242, "DB::Exception")},
		{name: "TOO_MANY_PARTS", err: ex(252, "DB::Exception")},
		{name: "TOO_FEW_LIVE_REPLICAS", err: ex(285, "DB::Exception")},
		{name: "UNKNOWN_STATUS_OF_INSERT", err: ex(319, "DB::Exception")},
		{name: "QUERY_WAS_CANCELLED", err: ex(394, "DB::Exception")},
		{name: "KEEPER_EXCEPTION", err: ex(999, "Coordination::Exception")},
		{name: "ALL_CONNECTION_TRIES_FAILED (a shard down)", err: ex(279, "DB::NetException")},
		{name: "NO_ZOOKEEPER", err: ex(225, "DB::Exception")},
		{name: "wrapped retryable exception", err: fmt.Errorf("send: %w", ex(210, "DB::NetException"))},

		{name: "UNKNOWN_TABLE is permanent", err: ex(60, "DB::Exception"), wantPermanent: true},
		{name: "NO_SUCH_COLUMN_IN_TABLE is permanent", err: ex(16, "DB::Exception"), wantPermanent: true},
		{name: "TYPE_MISMATCH is permanent", err: ex(53, "DB::Exception"), wantPermanent: true},
		{name: "UNKNOWN_DATABASE is permanent", err: ex(81, "DB::Exception"), wantPermanent: true},
		{name: "AUTHENTICATION_FAILED is permanent", err: ex(516, "DB::Exception"), wantPermanent: true},
		{name: "ACCESS_DENIED is permanent", err: ex(497, "DB::Exception"), wantPermanent: true},
		{name: "READONLY (the user's readonly setting) is permanent", err: ex(164, "DB::Exception"), wantPermanent: true},
		{name: "UNKNOWN_USER is permanent", err: ex(192, "DB::Exception"), wantPermanent: true},
		{name: "WRONG_PASSWORD is permanent", err: ex(193, "DB::Exception"), wantPermanent: true},
		{name: "REQUIRED_PASSWORD is permanent", err: ex(194, "DB::Exception"), wantPermanent: true},
		{name: "IP_ADDRESS_NOT_ALLOWED is permanent", err: ex(195, "DB::Exception"), wantPermanent: true},
		{name: "a server certificate not verified is permanent", err: fmt.Errorf("ping: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), wantPermanent: true},
		{name: "the server's certificate alert is permanent", err: fmt.Errorf("read: %w", &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}), wantPermanent: true},
		{name: "another TLS alert is retryable", err: &net.OpError{Op: "remote error", Err: errors.New("tls: internal error")}},
		{name: "wrapped permanent exception", err: fmt.Errorf("send: %w", ex(60, "DB::Exception")), wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify("insert", tt.err)
			if got == nil {
				t.Fatal("classify() = nil")
			}
			if p := retry.IsPermanent(got); p != tt.wantPermanent {
				t.Errorf("IsPermanent = %v, want %v (err %v)", p, tt.wantPermanent, got)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify() = %v does not wrap the original error", got)
			}
			if !strings.HasPrefix(got.Error(), "clickhouse insert: ") {
				t.Errorf("Error() = %q, want the operation as context", got.Error())
			}
			var target *ch.Exception
			if errors.As(tt.err, &target) && !errors.As(got, &target) {
				t.Error("classify() hides the *clickhouse.Exception")
			}
		})
	}
	if got := classify("insert", nil); got != nil {
		t.Errorf("classify(nil) = %v, want nil", got)
	}
}
