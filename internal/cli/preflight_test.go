package cli

import (
	"context"
	"errors"
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
	src := replication.Config{ConnString: cfg.DatabaseURL, Slot: e.Slot, Publication: e.Publication, Table: config.OutboxTable}

	d, err := preflight(context.Background(), &cfg, src, 2*time.Second, zerolog.Nop())
	if err == nil {
		d.close()
		t.Fatal("preflight passed with a PostgreSQL that never answers")
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a configuration error", err)
	}
	if !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("PostgreSQL is not reported:\n%v", err)
	}
	if strings.Contains(err.Error(), "ClickHouse") {
		t.Errorf("the reachable ClickHouse is reported as a problem:\n%v", err)
	}
}
