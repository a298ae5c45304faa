// Package testenv gives integration tests and benchmarks an isolated world
// on the real servers started by scripts/services.sh: a fresh PostgreSQL
// database and ClickHouse database per test (the relay's table names are
// fixed, so isolation is by database), migrated with the relay's own
// migrations and given the demo API's schema, with random slot and
// publication names, all removed in t.Cleanup.
//
// NewOn does the same on the shared ClickHouse cluster for the replicated
// and sharded topologies (database created ON CLUSTER; see Cluster).
//
// It reads DATABASE_URL and CLICKHOUSE_URL (the server-level URLs); tests
// skip when they are unset, so `go test ./...` works without servers and
// `make test` always sets them.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/api"
	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/topology"
)

// Env is one test's databases.
type Env struct {
	Name        string // database name in both servers
	DatabaseURL string // points at the test's PostgreSQL database
	ClickHouse  string // points at the test's ClickHouse database
	Slot        string
	Publication string
	PG          *pgxpool.Pool
	CH          driver.Conn
	// ServerDatabaseURL is the URL of the server's maintenance database.
	ServerDatabaseURL string
	// Cluster and Layout are set by NewOn for a cluster topology.
	Cluster *Cluster
	Layout  topology.Layout
}

// TB is the subset of testing.TB used here (tests and benchmarks).
type TB interface {
	testing.TB
}

// Skip skips t when the servers are not configured.
func Skip(t TB) {
	t.Helper()
	if os.Getenv("DATABASE_URL") == "" || os.Getenv("CLICKHOUSE_URL") == "" {
		t.Skip("DATABASE_URL / CLICKHOUSE_URL not set: run `make test` (scripts/services.sh starts the servers)")
	}
}

// RandomName returns prefix plus 8 random hex characters.
func RandomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// New creates and migrates the test's databases.
func New(t TB) *Env {
	t.Helper()
	Skip(t)
	return NewAt(t, os.Getenv("DATABASE_URL"))
}

// NewAt is New on the PostgreSQL server of serverURL (e.g. the failover
// pair's primary) instead of DATABASE_URL's.
func NewAt(t TB, serverURL string) *Env {
	t.Helper()
	return newAt(t, serverURL, true)
}

// NewBare is New without migrations: empty databases on both servers, for
// tests that bring an application's own tables and run `relay migrate`
// themselves.
func NewBare(t TB) *Env {
	t.Helper()
	Skip(t)
	return newAt(t, os.Getenv("DATABASE_URL"), false)
}

func newAt(t TB, serverURL string, migrated bool) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &Env{Name: RandomName("t_"), ServerDatabaseURL: serverURL, Layout: topology.Layout{Topology: topology.Single}}
	e.Slot, e.Publication = e.Name+"_slot", e.Name+"_pub"
	e.createPostgres(ctx, t)

	chAdmin, err := chsink.Connect(ctx, os.Getenv("CLICKHOUSE_URL"))
	if err != nil {
		t.Fatalf("connect to ClickHouse: %v", err)
	}
	defer func() { _ = chAdmin.Close() }()
	if err := chAdmin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+e.Name); err != nil {
		t.Fatalf("create clickhouse database: %v", err)
	}
	t.Cleanup(func() { e.dropClickHouse() })
	e.ClickHouse = withPath(t, os.Getenv("CLICKHOUSE_URL"), e.Name)

	if !migrated {
		if e.PG, err = pgxpool.New(ctx, e.DatabaseURL); err != nil {
			t.Fatalf("pool: %v", err)
		}
		if e.CH, err = chsink.Connect(ctx, e.ClickHouse); err != nil {
			t.Fatalf("connect to ClickHouse: %v", err)
		}
		return e
	}
	e.migratePostgres(ctx, t)
	if e.CH, err = chsink.Connect(ctx, e.ClickHouse); err != nil {
		t.Fatalf("connect to ClickHouse: %v", err)
	}
	if err := migrate.ClickHouse(ctx, e.CH, zerolog.Nop()); err != nil {
		t.Fatalf("migrate clickhouse: %v", err)
	}
	return e
}

// NewPostgres creates and migrates the test's PostgreSQL database only,
// for tests and benchmarks of the PostgreSQL side alone; it skips when
// DATABASE_URL is unset.
func NewPostgres(t TB) *Env {
	t.Helper()
	if os.Getenv("DATABASE_URL") == "" {
		t.Skip("DATABASE_URL not set: run `make test` (scripts/services.sh starts the servers)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &Env{Name: RandomName("t_"), ServerDatabaseURL: os.Getenv("DATABASE_URL"), Layout: topology.Layout{Topology: topology.Single}}
	e.Slot, e.Publication = e.Name+"_slot", e.Name+"_pub"
	e.createPostgres(ctx, t)
	e.migratePostgres(ctx, t)
	return e
}

// migratePostgres gives the database the schema `make run` gives it:
// `relay migrate`'s for the one default stream, then the demo API's (its
// users table and outbox_event.user_id), which end-to-end tests of the API,
// of extra columns and of message mode build on.
func (e *Env) migratePostgres(ctx context.Context, t TB) {
	t.Helper()
	if err := migrate.Postgres(ctx, e.DatabaseURL, e.Publication, true, migrate.Named(migrate.DefaultOutbox), zerolog.Nop()); err != nil {
		t.Fatalf("migrate postgres: %v", err)
	}
	var err error
	if e.PG, err = pgxpool.New(ctx, e.DatabaseURL); err != nil {
		t.Fatalf("pool: %v", err)
	}
	if err := api.EnsureSchema(ctx, e.PG); err != nil {
		t.Fatalf("demo schema: %v", err)
	}
}

func withPath(t TB, raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	u.Path = "/" + db
	return u.String()
}

func (e *Env) dropPostgres() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.PG != nil {
		e.PG.Close()
	}
	admin, err := pgx.Connect(ctx, e.ServerDatabaseURL)
	if err != nil {
		return
	}
	defer func() { _ = admin.Close(ctx) }()
	// Slots pin the database; end their walsenders and drop them first.
	_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, e.Name)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, err := admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, e.Name)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // cleanup only: wait for the walsender to exit
	}
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{e.Name}.Sanitize()+" WITH (FORCE)")
}

func (e *Env) dropClickHouse() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.CH != nil {
		_ = e.CH.Close()
	}
	if e.Cluster != nil {
		// Server by server, as NewOn created it.
		for i := range e.Cluster.Replicas {
			_ = e.Cluster.exec(ctx, i+1, "DROP DATABASE IF EXISTS "+e.Name)
		}
		return
	}
	conn, err := chsink.Connect(ctx, os.Getenv("CLICKHOUSE_URL"))
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+e.Name)
}

// RelayEnv is the environment for a relay process on this Env: every
// setting explicit, admin server off unless the test sets it.
func (e *Env) RelayEnv(extra ...string) []string {
	env := []string{
		"DATABASE_URL=" + e.DatabaseURL,
		"CLICKHOUSE_URL=" + e.ClickHouse,
		"RELAY_SLOT=" + e.Slot,
		"RELAY_PUBLICATION=" + e.Publication,
		"RELAY_ADMIN_ADDR=",
		"RELAY_STATUS_INTERVAL=1s",
		"CH_OUTBOX_PROCESSING_FREQUENCY_SEC=0.2",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"PATH=" + os.Getenv("PATH"),
	}
	if e.Cluster != nil {
		env = append(env, "CLICKHOUSE_TOPOLOGY="+string(e.Layout.Topology), "CLICKHOUSE_CLUSTER="+e.Layout.Cluster)
	}
	return append(env, extra...)
}

// Eventually polls cond every interval until it returns nil or timeout
// passes; then it fails the test with what and cond's last error.
func Eventually(t TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
}

// Poll is Eventually for a goroutine that is not the test's: it returns
// cond's last error when timeout passes instead of failing the test.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// Counts are what ClickHouse holds for this test.
type Counts struct {
	Rows, Distinct, Final uint64
}

// ClickHouseCounts reads count(), uniqExact(event_id) and count() FINAL.
func (e *Env) ClickHouseCounts(ctx context.Context) (Counts, error) {
	var c Counts
	if err := e.CH.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM event_log").Scan(&c.Rows, &c.Distinct); err != nil {
		return c, err
	}
	if err := e.CH.QueryRow(ctx, "SELECT count() FROM event_log FINAL").Scan(&c.Final); err != nil {
		return c, err
	}
	return c, nil
}

// OutboxRows counts the undelivered rows.
func (e *Env) OutboxRows(ctx context.Context) (int64, error) {
	var n int64
	err := e.PG.QueryRow(ctx, "SELECT count(*) FROM outbox_event").Scan(&n)
	return n, err
}

// SlotLag is pg_current_wal_lsn() - confirmed_flush_lsn of the test's slot.
func (e *Env) SlotLag(ctx context.Context) (int64, error) {
	var lag *int64
	err := e.PG.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, e.Slot).Scan(&lag)
	if err != nil {
		return 0, err
	}
	if lag == nil {
		return 0, fmt.Errorf("slot %s has no confirmed_flush_lsn", e.Slot)
	}
	return *lag, nil
}

// WaitDelivered waits until ClickHouse holds want distinct events and the
// outbox table is empty; it fails at once when one of procs has exited.
func (e *Env) WaitDelivered(t TB, want uint64, timeout time.Duration, procs ...*Process) Counts {
	t.Helper()
	ctx := context.Background()
	var c Counts
	Eventually(t, timeout, fmt.Sprintf("%d events delivered and outbox empty", want), func() error {
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("relay exited while waiting for delivery:\n%s", p.Output())
			}
		}
		var err error
		if c, err = e.ClickHouseCounts(ctx); err != nil {
			return err
		}
		n, err := e.OutboxRows(ctx)
		if err != nil {
			return err
		}
		if c.Distinct != want || n != 0 {
			return fmt.Errorf("clickhouse distinct=%d rows=%d, outbox rows=%d", c.Distinct, c.Rows, n)
		}
		return nil
	})
	return c
}
