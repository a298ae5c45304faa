package integration

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// TestVerifyFullTLS: the test server's certificate names localhost and
// 127.0.0.1 (scripts/services.sh), so sslmode=verify-full with it as the
// root works by either name: in-process, and for relay status.
func TestVerifyFullTLS(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("RELAY_SERVICES_DIR")
	if dir == "" {
		t.Skip("RELAY_SERVICES_DIR not set: the server's certificate is in its state directory")
	}
	e := testenv.New(t)
	ctx := context.Background()
	ca := filepath.Join(dir, "pg", "data", "server.crt")
	if _, err := os.Stat(ca); err != nil {
		t.Fatalf("the server's certificate: %v (a data directory older than its TLS setup: scripts/services.sh down --purge)", err)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		u, err := url.Parse(e.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = net.JoinHostPort(host, u.Port())
		u.RawQuery = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca}}.Encode()
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("verify-full to %s: %v", host, err)
		}
		var ssl bool
		err = conn.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl)
		_ = conn.Close(ctx)
		if err != nil || !ssl {
			t.Fatalf("verify-full to %s: ssl %t, %v", host, ssl, err)
		}
		if code, _, out := relayStatus(t, e.RelayEnv("DATABASE_URL="+u.String())); code == 1 || code == 2 {
			t.Errorf("relay status over verify-full to %s: exit %d\n%s", host, code, out)
		}
	}
}
