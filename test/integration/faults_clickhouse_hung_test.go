package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultClickHouseHung black-holes ClickHouse (connections open, no
// byte ever answered) under a streaming relay with the default 10 s status
// interval (readiness would call it stuck only after 100 s). Within 30 s the
// relay must notice on its own: a log line and a retryable sink error per
// failed attempt, outbox_relay_clickhouse_up 0 and /readyz red naming
// ClickHouse; once ClickHouse answers again everything is delivered once.
func TestFaultClickHouseHung(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.ClickHouse))
	admin := testenv.FreeAddr(t)
	p := faultStart(t, relayBin, e, "CLICKHOUSE_URL="+testenv.ReplaceHost(t, e.ClickHouse, proxy.Addr()),
		"RELAY_ADMIN_ADDR="+admin, "RELAY_STATUS_INTERVAL=10s")
	faultInsert(ctx, t, e, "warm-up", 10)
	e.WaitDelivered(t, 10, time.Minute, p)

	proxy.Pause()
	hungAt := time.Now()
	faultInsert(ctx, t, e, "while-hung", 5)
	const notice = 30 * time.Second
	testenv.Eventually(t, notice, "two failed sink attempts, each logged and counted, and ClickHouse down in /metrics and /readyz", func() error {
		faultAlive(t, p, "while ClickHouse hangs")
		logged := strings.Count(p.Output(), faultLogSinkRetrying)
		_, body, err := adminGet(admin, "/metrics")
		if err != nil {
			return err
		}
		errs, _ := metricValue(body, `outbox_relay_sink_errors_total{class="retryable"}`)
		up, _ := metricValue(body, "outbox_relay_clickhouse_up")
		code, ready, err := adminGet(admin, "/readyz")
		if err != nil {
			return err
		}
		if logged < 2 || errs < 2 || up != 0 || code != http.StatusServiceUnavailable || !strings.Contains(ready, "ClickHouse") {
			return fmt.Errorf("%d log lines, sink_errors_total{retryable} %v, clickhouse_up %v, /readyz %d %q",
				logged, errs, up, code, firstLines(ready, 1))
		}
		return nil
	})
	t.Logf("hung ClickHouse noticed within %s", time.Since(hungAt).Round(time.Millisecond))

	proxy.Resume()
	faultExpectExactlyOnce(t, e, 15, 2*time.Minute, p)
	waitAdmin(t, p, admin, "/readyz", http.StatusOK, "ready", time.Minute)
}
