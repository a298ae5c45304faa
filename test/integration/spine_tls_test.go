package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestRelayOverTLS streams over a TLS replication connection
// (sslmode=require; scripts/services.sh gives the server a certificate):
// a walsender sends each message as its own TLS record, which the stream
// must read in bulk, not a record per wait. Thousands of one-event
// transactions are delivered exactly once, and the walsender's connection
// is TLS.
func TestRelayOverTLS(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	if !strings.Contains(e.DatabaseURL, "sslmode=disable") {
		t.Fatalf("test DATABASE_URL %q does not say sslmode=disable", e.DatabaseURL)
	}
	tlsURL := strings.Replace(e.DatabaseURL, "sslmode=disable", "sslmode=require", 1)
	p := startRelay(t, e, "DATABASE_URL="+tlsURL)
	waitLog(t, p, logStreaming, 30*time.Second)

	var ssl bool
	if err := e.PG.QueryRow(ctx, `SELECT s.ssl FROM pg_replication_slots r JOIN pg_stat_ssl s ON s.pid = r.active_pid
		WHERE r.slot_name = $1`, e.Slot).Scan(&ssl); err != nil {
		t.Fatalf("the relay's walsender: %v", err)
	}
	if !ssl {
		t.Fatal("the relay's replication connection is not TLS")
	}

	const writers, each = 4, 1000 // one event per transaction
	var g errgroup.Group
	for w := range writers {
		g.Go(func() error {
			for i := range each {
				if err := insertTagged(ctx, e.PG, fmt.Sprintf("tls-%d-%d", w, i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	c := e.WaitDelivered(t, writers*each, 90*time.Second, p)
	if c.Rows != writers*each || c.Distinct != writers*each {
		t.Fatalf("event_log has %d rows, %d distinct; want %d once each", c.Rows, c.Distinct, writers*each)
	}
}
