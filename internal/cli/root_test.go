package cli

import (
	"bytes"
	"context"
	"math"
	"net"
	"strings"
	"testing"
)

// Command-line mistakes exit 2 with a hint, as --help and the README say;
// none of them reaches a server (the URLs point nowhere).
func TestUsageErrorsExit2(t *testing.T) {
	environ := []string{"DATABASE_URL=postgres://u@127.0.0.1:1/db", "CLICKHOUSE_URL=clickhouse://127.0.0.1:1/db"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown command", args: []string{"bogus"}, want: `unknown command "bogus"`},
		{name: "run with an argument", args: []string{"run", "extra"}, want: `"extra"`},
		{name: "status with an argument", args: []string{"status", "extra"}, want: `"extra"`},
		{name: "migrate with an argument", args: []string{"migrate", "extra"}, want: `"extra"`},
		{name: "unknown flag", args: []string{"run", "--bogus"}, want: "--bogus"},
		{name: "batch bytes whose double overflows", args: []string{"run", "--batch-bytes=4611686018427387904"}, want: "RELAY_BATCH_BYTES must be between"},
		{name: "largest int64 batch bytes", args: []string{"run", "--batch-bytes=9223372036854775807"}, want: "RELAY_BATCH_BYTES must be between"},
		{name: "status --watch=0s", args: []string{"status", "--watch=0s"}, want: "--watch"},
		{name: "status --watch=-1s", args: []string{"status", "--watch=-1s"}, want: "--watch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tc.args, environ, &stdout, &stderr)
			if code != ExitUsage {
				t.Errorf("relay %s: exit %d, want %d; stderr:\n%s", strings.Join(tc.args, " "), code, ExitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("relay %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), tc.want, stderr.String())
			}
		})
	}
}

// relay alone prints the help and exits 0.
func TestNoCommandPrintsHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), nil, nil, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "Available Commands") {
		t.Errorf("no help on stdout:\n%s", stdout.String())
	}
}

// The memory limit never wraps into a negative number (no limit at all).
func TestMemoryLimitSaturates(t *testing.T) {
	tests := []struct {
		name       string
		batchBytes int64
		want       int64
	}{
		{name: "default", batchBytes: 16 << 20, want: 64 << 20},
		{name: "1 GiB", batchBytes: 1 << 30, want: 2<<30 + 32<<20},
		{name: "double overflows", batchBytes: 1 << 62, want: math.MaxInt64},
		{name: "largest int64", batchBytes: math.MaxInt64, want: math.MaxInt64},
	}
	for _, tc := range tests {
		if got := memoryLimit(tc.batchBytes); got != tc.want {
			t.Errorf("%s: memoryLimit(%d) = %d, want %d", tc.name, tc.batchBytes, got, tc.want)
		}
	}
}

// An admin address in use is a clear configuration error (exit 2) before
// anything starts, not a warning about buffered events.
func TestAdminAddressInUse(t *testing.T) {
	ln, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	environ := []string{"DATABASE_URL=postgres://u@127.0.0.1:1/db", "CLICKHOUSE_URL=clickhouse://127.0.0.1:1/db",
		"RELAY_ADMIN_ADDR=" + ln.Addr().String(), "LOG_FORMAT=json"}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"run"}, environ, &stdout, &stderr)
	if code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	out := stderr.String()
	if !strings.Contains(out, "RELAY_ADMIN_ADDR "+ln.Addr().String()) || !strings.Contains(out, "address already in use") {
		t.Errorf("stderr does not say the admin address is in use:\n%s", out)
	}
	if strings.Contains(out, "buffered events") || strings.Contains(out, "PostgreSQL") {
		t.Errorf("stderr has more than the admin address problem:\n%s", out)
	}
}

// An admin address that cannot be listened on for another reason than
// another process says that reason, and not that the address is in use.
func TestAdminAddressUnusable(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:99999", "port 99999 is out of range"},
		{"192.0.2.1:9090", "cannot assign requested address"}, // TEST-NET-1: no local interface has it
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			environ := []string{"DATABASE_URL=postgres://u@127.0.0.1:1/db", "CLICKHOUSE_URL=clickhouse://127.0.0.1:1/db",
				"RELAY_ADMIN_ADDR=" + tt.addr, "LOG_FORMAT=json"}
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), []string{"run"}, environ, &stdout, &stderr); code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			out := stderr.String()
			if !strings.Contains(out, tt.want) || strings.Contains(out, "another process") {
				t.Errorf("stderr should say %q and not blame another process:\n%s", tt.want, out)
			}
		})
	}
}
