package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/testenv"
)

// A PostgreSQL that accepts connections and never answers must not use up
// ClickHouse's start-up check too: only PostgreSQL is reported.
func TestPreflightChecksHaveTheirOwnDeadlines(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	hung := testenv.NewFaultProxy(t, testenv.Host(t, e.DatabaseURL))
	hung.Pause()
	cfg := config.Defaults()
	cfg.DatabaseURL = testenv.ReplaceHost(t, e.DatabaseURL, hung.Addr())
	cfg.ClickHouseURL = e.ClickHouse
	src := replication.Config{ConnString: cfg.DatabaseURL, Slot: e.Slot, Publication: e.Publication}

	d, err := preflight(context.Background(), &cfg, &src, 2*time.Second, zerolog.Nop())
	if err == nil {
		d.close()
		t.Fatal("preflight passed with a PostgreSQL that never answers")
	}
	var ce *config.Error
	var xe *exitError
	if errors.As(err, &ce) || !errors.As(err, &xe) || xe.code != ExitFailure {
		t.Fatalf("error %v is not a runtime failure (exit 1): a server that does not answer is no configuration error", err)
	}
	if !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("PostgreSQL is not reported:\n%v", err)
	}
	if strings.Contains(err.Error(), "ClickHouse") {
		t.Errorf("the reachable ClickHouse is reported as a problem:\n%v", err)
	}
}

// A server down at start is a runtime failure (exit 1, which supervisors
// restart), named as such, not "invalid configuration" (exit 2); a real
// configuration problem of a reachable server still is exit 2.
func TestRunWithAServerDown(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	tests := []struct {
		name     string
		env      []string
		wantCode int
		want     string
	}{
		{"PostgreSQL down", []string{"DATABASE_URL=" + testenv.ReplaceHost(t, e.DatabaseURL, closed)}, ExitFailure, "PostgreSQL (DATABASE_URL) is not reachable"},
		{"ClickHouse down", []string{"CLICKHOUSE_URL=" + testenv.ReplaceHost(t, e.ClickHouse, closed)}, ExitFailure, "ClickHouse (CLICKHOUSE_URL)"},
		{"publication missing", []string{"RELAY_PUBLICATION=nope"}, ExitUsage, "invalid configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), []string{"run"}, e.RelayEnv(tt.env...), &stdout, &stderr)
			out := stderr.String()
			if code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tt.wantCode, tt.want, out)
			}
			if tt.wantCode == ExitFailure && strings.Contains(out, "invalid configuration") {
				t.Errorf("a server down is reported as a configuration error:\n%s", out)
			}
		})
	}
}
