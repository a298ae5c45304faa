package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/migrations"
	"github.com/outbox-relay/relay/outbox"
)

var _ DB = (*pgxpool.Pool)(nil)

// fakeDB is a DB whose behavior each test sets; unset methods fail.
type fakeDB struct {
	begin    func(ctx context.Context) (pgx.Tx, error)
	queryRow func(ctx context.Context, sql string, args ...any) pgx.Row
	ping     func(ctx context.Context) error
}

var errFake = errors.New("fake db: not available")

func (f *fakeDB) Begin(ctx context.Context) (pgx.Tx, error) {
	if f.begin == nil {
		return nil, errFake
	}
	return f.begin(ctx)
}

func (f *fakeDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if f.queryRow == nil {
		return rowFunc(func(...any) error { return errFake })
	}
	return f.queryRow(ctx, sql, args...)
}

func (f *fakeDB) Ping(ctx context.Context) error {
	if f.ping == nil {
		return errFake
	}
	return f.ping(ctx)
}

// rowFunc is a pgx.Row whose Scan is the function.
type rowFunc func(dest ...any) error

func (f rowFunc) Scan(dest ...any) error { return f(dest...) }

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sentryRecorder is a sentry.Transport that keeps events in memory.
type sentryRecorder struct {
	mu     sync.Mutex
	events []*sentry.Event
}

func (r *sentryRecorder) Flush(time.Duration) bool              { return true }
func (r *sentryRecorder) FlushWithContext(context.Context) bool { return true }
func (r *sentryRecorder) Configure(sentry.ClientOptions)        {}
func (r *sentryRecorder) Close()                                {}
func (r *sentryRecorder) SendEvent(e *sentry.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}
func (r *sentryRecorder) Events() []*sentry.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sentry.Event(nil), r.events...)
}

var _ sentry.Transport = (*sentryRecorder)(nil)

// newRecordingHub returns a hub that sends to an in-memory transport.
func newRecordingHub(t *testing.T) (*sentry.Hub, *sentryRecorder) {
	t.Helper()
	rec := &sentryRecorder{}
	client, err := sentry.NewClient(sentry.ClientOptions{Dsn: "http://public@127.0.0.1:1/1", Transport: rec})
	if err != nil {
		t.Fatalf("sentry client: %v", err)
	}
	return sentry.NewHub(client, sentry.NewScope()), rec
}

// fixture is a Server over some DB with its log and Sentry captured.
type fixture struct {
	srv    *Server
	log    *syncBuffer
	sentry *sentryRecorder
}

func newFixture(t *testing.T, db DB, pub *outbox.Publisher, opts ...Option) *fixture {
	t.Helper()
	if pub == nil {
		var err error
		if pub, err = outbox.NewPublisher("test"); err != nil {
			t.Fatal(err)
		}
	}
	hub, rec := newRecordingHub(t)
	logs := &syncBuffer{}
	// A generous database timeout: the concurrency tests queue hundreds of
	// requests for a few pooled connections on a shared, loaded machine, and
	// a 500 there would be the test's impatience, not the handler's.
	cfg := Config{DBTimeout: time.Minute, WriteTimeout: time.Minute + 5*time.Second}
	srv, err := New(cfg, db, pub, zerolog.New(logs), append([]Option{WithSentryHub(hub)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &fixture{srv: srv, log: logs, sentry: rec}
}

// do serves one request in process.
func (f *fixture) do(method, target, contentType, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, req)
	return w
}

// testPool connects to DATABASE_URL or skips.
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		t.Skip("DATABASE_URL not set")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse DATABASE_URL: %v", err)
	}
	cfg.MaxConns = 20
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	ensureSchema(t, pool)
	return pool
}

// ensureSchema creates outbox_event (as relay migrate does) and the demo's
// users table where the shared database lacks them, under an advisory lock
// so test packages running in parallel do not race on DDL. It leaves
// outbox_event without the demo's user_id: other packages copy that table
// and expect the relay's columns only.
func ensureSchema(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('outbox-relay test schema'))`); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, migrations.OutboxEvent); err != nil {
			return fmt.Errorf("create outbox_event: %w", err)
		}
		return ensureUsers(ctx, tx)
	})
	if err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
}

// dbEnv is an httptest server on the real database. Its users have emails
// ending in "-<suffix>@example.test"; its events go to a private copy of
// outbox_event, so a relay consuming the real table cannot disturb counts.
type dbEnv struct {
	*fixture
	pool   *pgxpool.Pool
	table  string
	suffix string
	ts     *httptest.Server
}

func newDBEnv(t *testing.T, opts ...Option) *dbEnv {
	t.Helper()
	pool := testPool(t)
	e := &dbEnv{pool: pool, suffix: strings.ReplaceAll(uuid.NewString(), "-", "")[:12]}
	e.table = "outbox_api_test_" + e.suffix
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+e.ident()+` (LIKE outbox_event INCLUDING ALL)`); err != nil {
		t.Fatalf("create outbox table: %v", err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(ctx, `DELETE FROM users WHERE email LIKE '%' || $1`, e.emailTail()); err != nil {
			t.Errorf("delete test users: %v", err)
		}
		if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS `+e.ident()); err != nil {
			t.Errorf("drop outbox table: %v", err)
		}
	})
	pub, err := outbox.NewPublisher("test", outbox.WithTable(e.table))
	if err != nil {
		t.Fatal(err)
	}
	e.fixture = newFixture(t, pool, pub, opts...)
	e.ts = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.ts.Close)
	return e
}

func (e *dbEnv) ident() string     { return pgx.Identifier{e.table}.Sanitize() }
func (e *dbEnv) emailTail() string { return "-" + e.suffix + "@example.test" }
func (e *dbEnv) email(local string) string {
	return local + e.emailTail()
}

// counts returns this test's users and user_created events for email
// (all of this test's when email is "").
func (e *dbEnv) counts(t *testing.T, email string) (users, events int) {
	t.Helper()
	ctx := context.Background()
	userQ, eventQ := `SELECT count(*) FROM users WHERE email LIKE '%' || $1`,
		`SELECT count(*) FROM `+e.ident()+` WHERE event_type = 'user_created' AND event_context->>'email' LIKE '%' || $1`
	arg := e.emailTail()
	if email != "" {
		userQ, eventQ = `SELECT count(*) FROM users WHERE email = $1`,
			`SELECT count(*) FROM `+e.ident()+` WHERE event_type = 'user_created' AND event_context->>'email' = $1`
		arg = email
	}
	if err := e.pool.QueryRow(ctx, userQ, arg).Scan(&users); err != nil {
		t.Fatalf("count users: %v", err)
	}
	if err := e.pool.QueryRow(ctx, eventQ, arg).Scan(&events); err != nil {
		t.Fatalf("count events: %v", err)
	}
	return users, events
}

// reply is a response already read and closed.
type reply struct {
	status int // 0 when the request failed
	header http.Header
	body   []byte
}

// post sends POST /users over the network to the env's server.
func (e *dbEnv) post(t *testing.T, client *http.Client, body string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.ts.URL+"/users", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return send(t, client, req)
}

// get sends GET path to the env's server.
func (e *dbEnv) get(t *testing.T, path string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, e.ts.Client(), req)
}

func send(t *testing.T, client *http.Client, req *http.Request) reply {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL, err)
		return reply{}
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Errorf("read body: %v", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: buf.Bytes()}
}
