package clickhouse_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/outbox-relay/relay/internal/testenv"
)

// A CLICKHOUSE_URL as a new user writes it, without a user (clickhouse-go
// logs in as "default"; so must the inserts), and one listing a dead host
// first: the inserts fail over to the next host as clickhouse-go does.
func TestSinkURLs(t *testing.T) {
	e := testenv.New(t)
	u, err := url.Parse(e.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	if u.User != nil && u.User.Username() != "default" {
		t.Skipf("CLICKHOUSE_URL logs in as %q: the test needs the default user", u.User.Username())
	}
	u.User = nil
	noUser := u.String()
	u.Host = testenv.FreeAddr(t) + "," + u.Host
	deadFirst := u.String()

	var written uint64
	for _, dsn := range []string{noUser, deadFirst, deadFirst + "?connection_open_strategy=round_robin"} {
		t.Run(strings.TrimPrefix(dsn, "clickhouse://"), func(t *testing.T) {
			s := openSink(t, dsn)
			for range 2 { // a new connection, then the kept one
				if err := s.Write(context.Background(), "event_log", sinkEvents(1, 3)); err != nil {
					t.Fatalf("write through %s: %v", dsn, err)
				}
				written += 3
			}
			var n uint64
			if err := e.CH.QueryRow(context.Background(), "SELECT count() FROM event_log").Scan(&n); err != nil || n != written {
				t.Fatalf("event_log holds %d rows (%v), want %d", n, err, written)
			}
		})
	}
}
