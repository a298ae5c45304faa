package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// adminGet fetches path from the admin server at addr.
func adminGet(addr, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitAdmin polls path until it answers code and its body contains want.
func waitAdmin(t *testing.T, p *testenv.Process, addr, path string, code int, want string, timeout time.Duration) string {
	t.Helper()
	var body string
	testenv.Eventually(t, timeout, fmt.Sprintf("%s answering %d with %q", path, code, want), func() error {
		if p.Exited() {
			t.Fatalf("relay exited:\n%s", p.Output())
		}
		got, b, err := adminGet(addr, path)
		if err != nil {
			return err
		}
		body = b
		if got != code || !strings.Contains(b, want) {
			return fmt.Errorf("%d %q", got, firstLines(b, 3))
		}
		return nil
	})
	return body
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// metricValue reads an unlabelled sample (or one with exactly the given
// label set) from a Prometheus text exposition.
func metricValue(body, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// While streaming: /healthz and /readyz are 200, /metrics counts the
// delivered events and shows the slot gauges, and pprof is off.
func TestAdminEndpointsWhileStreaming(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	addr := testenv.FreeAddr(t)
	p := startRelay(t, e, "RELAY_ADMIN_ADDR="+addr)
	waitAdmin(t, p, addr, "/readyz", http.StatusOK, "ready: streaming", 30*time.Second)
	if code, body, err := adminGet(addr, "/healthz"); err != nil || code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q %v", code, body, err)
	}
	for i := range 10 {
		if err := opsInsert(ctx, e.PG, fmt.Sprintf("admin-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	e.WaitDelivered(t, 10, 30*time.Second, p)
	body := waitAdmin(t, p, addr, "/metrics", http.StatusOK, `outbox_relay_wal_status{status="reserved"} 1`, 30*time.Second)
	if v, ok := metricValue(body, "outbox_relay_events_total"); !ok || v < 10 {
		t.Errorf("outbox_relay_events_total = %v (found %v), want >= 10", v, ok)
	}
	if _, ok := metricValue(body, "outbox_relay_slot_lag_bytes"); !ok {
		t.Error("outbox_relay_slot_lag_bytes missing from /metrics")
	}
	if _, ok := metricValue(body, "outbox_relay_retained_wal_bytes"); !ok {
		t.Error("outbox_relay_retained_wal_bytes missing from /metrics")
	}
	if code, _, err := adminGet(addr, "/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without RELAY_PPROF = %d %v, want 404", code, err)
	}
	// An idle outbox on a server whose WAL moves (other tables here, other
	// tests' databases too) stays ready for longer than both readiness
	// limits (RELAY_STATUS_INTERVAL=1s: 8s of silence, 10s stuck).
	opsExec(ctx, t, e.PG, `CREATE TABLE admin_noise (n int)`)
	stayAdmin(t, p, addr, "/readyz", http.StatusOK, 15*time.Second, func() {
		opsExec(ctx, t, e.PG, `INSERT INTO admin_noise SELECT generate_series(1, 100)`)
	})
}

// stayAdmin polls path for the whole of d (calling between each time) and
// fails at the first answer other than code.
func stayAdmin(t *testing.T, p *testenv.Process, addr, path string, code int, d time.Duration, between func()) {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond) // polling pace
	defer tick.Stop()
	end := time.Now().Add(d)
	for polls := 0; time.Now().Before(end); polls++ {
		if p.Exited() {
			t.Fatalf("relay exited:\n%s", p.Output())
		}
		got, body, err := adminGet(addr, path)
		if err != nil || got != code {
			t.Fatalf("%s after %d polls = %d %q %v, want %d for %s", path, polls, got, body, err, code, d)
		}
		between()
		<-tick.C
	}
}

// A second relay on the same slot stands by: alive (/healthz 200) but not
// ready (/readyz 503, stream not connected). RELAY_PPROF turns pprof on.
func TestAdminReadyzRedWhileNotConnected(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	addr1, addr2 := testenv.FreeAddr(t), testenv.FreeAddr(t)
	first := startRelay(t, e, "RELAY_ADMIN_ADDR="+addr1)
	waitAdmin(t, first, addr1, "/readyz", http.StatusOK, "ready", 30*time.Second)
	second := startRelay(t, e, "RELAY_ADMIN_ADDR="+addr2, "RELAY_PPROF=true")
	waitAdmin(t, second, addr2, "/healthz", http.StatusOK, "ok", 30*time.Second)
	waitAdmin(t, second, addr2, "/readyz", http.StatusServiceUnavailable, "not ready: replication stream is not connected", 10*time.Second)
	waitAdmin(t, second, addr2, "/debug/pprof/", http.StatusOK, "goroutine", 10*time.Second)
	body := waitAdmin(t, second, addr2, "/metrics", http.StatusOK, "outbox_relay_stream_connected 0", 10*time.Second)
	if !strings.Contains(body, "outbox_relay_wal_status") {
		t.Error("standby exports no outbox_relay_wal_status")
	}
	if code, _, err := adminGet(addr1, "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("first relay /readyz = %d %v, want 200 while the second stands by", code, err)
	}
}

// When ClickHouse stops answering while events wait, the relay stays alive
// but its confirmed LSN stops while the server keeps sending: /readyz turns
// 503 ("stuck"), and 200 again once ClickHouse is back.
func TestAdminReadyzRedWhenStuckOnClickHouse(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.ClickHouse))
	addr := testenv.FreeAddr(t)
	p := startRelay(t, e, "RELAY_ADMIN_ADDR="+addr, "CLICKHOUSE_URL="+testenv.ReplaceHost(t, e.ClickHouse, proxy.Addr()))
	waitAdmin(t, p, addr, "/readyz", http.StatusOK, "ready: streaming", 30*time.Second)
	if err := opsInsert(ctx, e.PG, "before"); err != nil {
		t.Fatal(err)
	}
	e.WaitDelivered(t, 1, 30*time.Second, p)

	proxy.Down()
	for i := range 5 {
		if err := opsInsert(ctx, e.PG, fmt.Sprintf("during-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// RELAY_STATUS_INTERVAL=1s: stuck after 10s without the LSN moving.
	waitAdmin(t, p, addr, "/readyz", http.StatusServiceUnavailable, "not ready: stuck", 60*time.Second)
	if code, _, err := adminGet(addr, "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz while stuck = %d %v, want 200", code, err)
	}

	proxy.Up()
	e.WaitDelivered(t, 6, time.Minute, p)
	waitAdmin(t, p, addr, "/readyz", http.StatusOK, "ready: streaming", 60*time.Second)
}

// The least-privilege role of the README (LOGIN REPLICATION, CONNECT,
// SELECT and DELETE on outbox_event, SELECT, INSERT and UPDATE on
// outbox_relay_state) is enough for relay run, relay status
// and readiness, although pg_stat_replication hides the walsender's
// positions and reply time from it.
func TestAdminAndStatusWithLeastPrivilegeRole(t *testing.T) {
	t.Parallel()
	role := testenv.RandomName("relay_lp_")
	// Registered before testenv.New, so it runs after the database is gone.
	t.Cleanup(func() { dropRole(role) })
	e := testenv.New(t)
	ctx := context.Background()
	db := pgx.Identifier{e.Name}.Sanitize()
	opsExec(ctx, t, e.PG, "CREATE ROLE "+role+" LOGIN REPLICATION")
	opsExec(ctx, t, e.PG, "GRANT CONNECT ON DATABASE "+db+" TO "+role)
	opsExec(ctx, t, e.PG, "GRANT SELECT, DELETE ON outbox_event TO "+role)
	opsExec(ctx, t, e.PG, "GRANT SELECT, INSERT, UPDATE ON outbox_relay_state TO "+role)
	opsExec(ctx, t, e.PG, "GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_relay_batch TO "+role)
	opsExec(ctx, t, e.PG, "GRANT INSERT ON outbox_dead_letter TO "+role)
	u, err := url.Parse(e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	asRole := "DATABASE_URL=" + u.String()

	addr := testenv.FreeAddr(t)
	p := startRelay(t, e, asRole, "RELAY_ADMIN_ADDR="+addr)
	waitAdmin(t, p, addr, "/readyz", http.StatusOK, "ready: streaming", 30*time.Second)
	if err := opsInsert(ctx, e.PG, "least-privilege"); err != nil {
		t.Fatal(err)
	}
	e.WaitDelivered(t, 1, 30*time.Second, p)
	r := waitStatus(t, e.RelayEnv(asRole, "RELAY_STATUS_LAG_WARN_BYTES=0", "RELAY_STATUS_LAG_CRIT_BYTES=0"), statusExitOK, 30*time.Second, nil)
	if !r.Active || r.LagBytes == nil || r.RetainedWALBytes == nil {
		t.Errorf("status as %s: %+v", role, r)
	}
	waitAdmin(t, p, addr, "/metrics", http.StatusOK, `outbox_relay_wal_status{status="reserved"} 1`, 30*time.Second)
	// No reply times are visible to this role: idling past MaxSilence (8s)
	// must not turn /readyz red.
	stayAdmin(t, p, addr, "/readyz", http.StatusOK, 12*time.Second, func() {})
}

// dropRole drops a role created by a test (best effort, at cleanup).
func dropRole(role string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
}
