package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/api"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/outbox"
)

func startAPI(t *testing.T, e *testenv.Env) *httptest.Server { return startAPIForBench(t, e) }

func startAPIForBench(t testing.TB, e *testenv.Env) *httptest.Server {
	t.Helper()
	pub, err := outbox.NewPublisher("test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{}, e.PG, pub, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func postUser(client *http.Client, base, email string) (int, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "first_name": "Ada", "last_name": "Lovelace"})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/users", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	return resp.StatusCode, nil
}

// With ClickHouse unreachable the API still creates users (their events wait
// in the outbox); once ClickHouse is back the relay delivers every event.
func TestAPIDecoupledFromClickHouseOutage(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.ClickHouse))
	env := e.RelayEnv()
	env = append(env, "CLICKHOUSE_URL="+testenv.ReplaceHost(t, e.ClickHouse, proxy.Addr()))
	relay := testenv.Start(t, relayBin, env, "run")
	ts := startAPI(t, e)
	client := &http.Client{Timeout: 5 * time.Second}

	// The relay is streaming once a first event arrives.
	if code, err := postUser(client, ts.URL, "first@example.com"); err != nil || code != http.StatusCreated {
		t.Fatalf("POST /users: %d %v", code, err)
	}
	e.WaitDelivered(t, 1, time.Minute, relay)

	proxy.Down()
	const n = 30
	for i := range n {
		code, err := postUser(client, ts.URL, fmt.Sprintf("outage%d@example.com", i))
		if err != nil || code != http.StatusCreated {
			t.Fatalf("POST /users during ClickHouse outage: %d %v", code, err)
		}
	}
	if rows, err := e.OutboxRows(context.Background()); err != nil || rows != n {
		t.Fatalf("outbox rows during outage = %d (%v), want %d waiting", rows, err, n)
	}
	proxy.Up()
	c := e.WaitDelivered(t, n+1, 2*time.Minute, relay)
	if c.Final != n+1 {
		t.Fatalf("FINAL count = %d, want %d", c.Final, n+1)
	}
}

// 500 concurrent sign-ups end as 500 users and 500 user_created events in
// ClickHouse; 50 concurrent sign-ups with one email end as one.
func TestAPIConcurrentSignupsReachClickHouse(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	relay := testenv.Start(t, relayBin, e.RelayEnv(), "run")
	ts := startAPI(t, e)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}

	var wg sync.WaitGroup
	codes := make(chan int, 550)
	for i := range 500 {
		wg.Go(func() {
			code, err := postUser(client, ts.URL, fmt.Sprintf("user%d@example.com", i))
			if err != nil {
				t.Errorf("POST: %v", err)
			}
			codes <- code
		})
	}
	for range 50 {
		wg.Go(func() {
			code, err := postUser(client, ts.URL, "same@example.com")
			if err != nil {
				t.Errorf("POST: %v", err)
			}
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusCreated] != 501 || count[http.StatusConflict] != 49 {
		t.Fatalf("status codes = %v, want 501×201 and 49×409", count)
	}
	e.WaitDelivered(t, 501, 2*time.Minute, relay)
	var users uint64
	if err := e.CH.QueryRow(context.Background(), "SELECT count() FROM event_log FINAL WHERE event_type = 'user_created'").Scan(&users); err != nil {
		t.Fatal(err)
	}
	if users != 501 {
		t.Fatalf("user_created events in ClickHouse = %d, want 501", users)
	}
}
