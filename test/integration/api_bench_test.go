package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/testenv"
)

// BenchmarkCreateUser compares POST /users of the outbox design (user and
// event in one PostgreSQL transaction, the relay running beside it) with the
// original design: a synchronous ClickHouse insert per request after the
// user is written. Both run in the same process, against the same servers,
// in one benchmark run; compare their req/s.
func BenchmarkCreateUser(b *testing.B) {
	var seq atomic.Int64
	run := func(b *testing.B, url string) {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				code, err := postUser(client, url, fmt.Sprintf("bench%d@example.com", seq.Add(1)))
				if err != nil || code != http.StatusCreated {
					b.Errorf("POST /users: %d %v", code, err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	}

	b.Run("outbox+relay", func(b *testing.B) {
		e := testenv.New(b)
		testenv.Start(b, relayBin, e.RelayEnv(), "run")
		ts := startAPIForBench(b, e)
		run(b, ts.URL)
	})
	b.Run("sync-clickhouse-baseline", func(b *testing.B) {
		e := testenv.New(b)
		ts := httptest.NewServer(syncBaseline(e))
		b.Cleanup(ts.Close)
		run(b, ts.URL)
	})
}

// syncBaseline is the original design: write the user, then insert its event
// into ClickHouse synchronously, one INSERT per request.
func syncBaseline(e *testenv.Env) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Email     string `json:"email"`
			FirstName string `json:"first_name"`
			LastName  string `json:"last_name"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx := r.Context()
		var id uuid.UUID
		var created time.Time
		err := e.PG.QueryRow(ctx, `INSERT INTO users (email, first_name, last_name) VALUES ($1, $2, $3) RETURNING id, created_at`,
			in.Email, in.FirstName, in.LastName).Scan(&id, &created)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		payload, _ := json.Marshal(map[string]any{"id": id, "email": in.Email, "first_name": in.FirstName, "last_name": in.LastName})
		batch, err := e.CH.PrepareBatch(ctx, "INSERT INTO event_log (event_id, event_type, event_date_time, environment, event_context, metadata_version, commit_lsn)")
		if err == nil {
			err = batch.Append(uuid.New(), "user_created", created.Truncate(time.Second), "bench", string(payload), uint64(1), uint64(0))
		}
		if err == nil {
			err = batch.Send()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
}
