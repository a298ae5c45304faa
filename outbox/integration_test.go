package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/outbox"
)

// Every pgx handle a caller might hold can publish.
var (
	_ outbox.Execer = (pgx.Tx)(nil)
	_ outbox.Execer = (*pgx.Conn)(nil)
	_ outbox.Execer = (*pgxpool.Pool)(nil)
	_ outbox.Execer = (*pgxpool.Conn)(nil)
)

// testPool connects to DATABASE_URL or skips the test.
func testPool(tb testing.TB, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	tb.Helper()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		tb.Skip("DATABASE_URL not set")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("parse DATABASE_URL: %v", err)
	}
	for _, f := range configure {
		f(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		tb.Fatalf("ping: %v", err)
	}
	return pool
}

// newOutboxTable creates a private copy of outbox_event (applying the
// migration first if the database has none) and drops it after the test, so
// tests never see rows of others and a running relay never sees theirs.
func newOutboxTable(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pgx.BeginFunc(ctx, pool, ensureOutboxTable); err != nil {
		tb.Fatalf("ensure outbox_event: %v", err)
	}
	name := "outbox_test_" + strings.ReplaceAll(uuid.NewString()[:13], "-", "")
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+ident+` (LIKE outbox_event INCLUDING ALL)`); err != nil {
		tb.Fatalf("create %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS `+ident); err != nil {
			tb.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// ensureOutboxTable applies the outbox migration if the database lacks it,
// under an advisory lock so parallel test packages do not race on DDL.
func ensureOutboxTable(tx pgx.Tx) error {
	ctx := context.Background()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('outbox-relay test schema'))`); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('outbox_event') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("look up outbox_event: %w", err)
	}
	if exists {
		return nil
	}
	b, err := os.ReadFile(filepath.Join("..", "migrations", "outbox_event.sql"))
	if err != nil {
		return fmt.Errorf("read migration: %w", err)
	}
	if _, err := tx.Exec(ctx, string(b)); err != nil {
		return fmt.Errorf("apply migration: %w", err)
	}
	return nil
}

// countingExecer counts statements sent through it.
type countingExecer struct {
	outbox.Execer
	calls int
}

func (c *countingExecer) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.calls++
	return c.Execer.Exec(ctx, sql, args...)
}

type row struct {
	ID          uuid.UUID
	Type        string
	At          time.Time
	Environment string
	Context     json.RawMessage
	Version     int64
}

func readRows(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, table string) []row {
	t.Helper()
	// ctid order is insert order on a fresh table without updates or deletes.
	rows, err := q.Query(context.Background(),
		`SELECT id, event_type, event_date_time, environment, event_context, metadata_version FROM `+
			pgx.Identifier{table}.Sanitize()+` ORDER BY ctid`)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.ID, &x.Type, &x.At, &x.Environment, &x.Context, &x.Version)
		return x, err
	})
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	return got
}

func newPublisher(t testing.TB, table string) *outbox.Publisher {
	t.Helper()
	pub, err := outbox.NewPublisher("it", outbox.WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestIntegrationCommittedEventsAppear(t *testing.T) {
	pool := testPool(t)
	table := newOutboxTable(t, pool)
	pub := newPublisher(t, table)
	ctx := context.Background()
	at := time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.FixedZone("CET", 3600))

	var ids []uuid.UUID
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		ids, err = pub.Publish(ctx, tx,
			outbox.Event{Type: "a", OccurredAt: at, Context: map[string]any{"n": 1, "s": "ü"}},
			outbox.Event{Type: "b", Context: json.RawMessage(`[1, {"x": null}]`), MetadataVersion: 3},
		)
		return err
	})
	if err != nil {
		t.Fatalf("publish and commit: %v", err)
	}
	got := readRows(t, pool, table)
	if len(got) != 2 {
		t.Fatalf("rows = %d, want 2", len(got))
	}
	want := []row{
		{ID: ids[0], Type: "a", At: at.Truncate(time.Microsecond), Environment: "it", Context: json.RawMessage(`{"n": 1, "s": "ü"}`), Version: 1},
		{ID: ids[1], Type: "b", Environment: "it", Context: json.RawMessage(`[1, {"x": null}]`), Version: 3},
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.Type != w.Type || g.Environment != w.Environment || g.Version != w.Version || string(g.Context) != string(w.Context) {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
		if !w.At.IsZero() && !g.At.Equal(w.At) {
			t.Errorf("row %d time = %v, want %v", i, g.At, w.At)
		}
	}
	if d := time.Since(got[1].At); d < -time.Minute || d > time.Minute {
		t.Errorf("default time %v is not about now", got[1].At)
	}
}

func TestIntegrationRollbackLeavesNothing(t *testing.T) {
	pool := testPool(t)
	table := newOutboxTable(t, pool)
	pub := newPublisher(t, table)
	ctx := context.Background()
	errBusiness := errors.New("business step failed")

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := pub.Publish(ctx, tx, outbox.Event{Type: "a", Context: 1}); err != nil {
			return err
		}
		if n := len(readRows(t, tx, table)); n != 1 {
			t.Errorf("inside tx rows = %d, want 1", n)
		}
		return errBusiness
	})
	if !errors.Is(err, errBusiness) {
		t.Fatalf("err = %v, want %v", err, errBusiness)
	}
	if got := readRows(t, pool, table); len(got) != 0 {
		t.Fatalf("rows after rollback = %d, want 0", len(got))
	}
}

func TestIntegrationHundredEventsOneStatement(t *testing.T) {
	pool := testPool(t)
	table := newOutboxTable(t, pool)
	pub := newPublisher(t, table)
	ctx := context.Background()
	events := make([]outbox.Event, 100)
	for i := range events {
		events[i] = outbox.Event{Type: "bulk", Context: map[string]int{"i": i}}
	}

	var ids []uuid.UUID
	var counter *countingExecer
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		counter = &countingExecer{Execer: tx}
		var err error
		ids, err = pub.Publish(ctx, counter, events...)
		return err
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if counter.calls != 1 {
		t.Errorf("statements = %d, want 1", counter.calls)
	}
	got := readRows(t, pool, table)
	if len(got) != 100 {
		t.Fatalf("rows = %d, want 100", len(got))
	}
	for i, r := range got {
		if r.ID != ids[i] || string(r.Context) != fmt.Sprintf(`{"i": %d}`, i) {
			t.Fatalf("row %d = %s %s, want id %s in call order", i, r.ID, r.Context, ids[i])
		}
	}
}

// Publish must work however the caller's pool talks to Postgres, including
// the simple protocol used behind transaction-pooling proxies.
func TestIntegrationQueryExecModes(t *testing.T) {
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			pool := testPool(t, func(c *pgxpool.Config) { c.ConnConfig.DefaultQueryExecMode = mode })
			table := newOutboxTable(t, pool)
			pub := newPublisher(t, table)
			ctx := context.Background()
			ids, err := pub.Publish(ctx, pool,
				outbox.Event{Type: "m", Context: map[string]string{"q": `quote " and \ backslash, {brace}`}},
				outbox.Event{Type: "m", Context: json.RawMessage(`"plain"`)},
			)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			got := readRows(t, pool, table)
			if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[1] {
				t.Fatalf("rows = %+v, want ids %v", got, ids)
			}
			if want := `{"q": "quote \" and \\ backslash, {brace}"}`; string(got[0].Context) != want {
				t.Errorf("context = %s, want %s", got[0].Context, want)
			}
		})
	}
}

func TestIntegrationDatabaseErrorIsWrapped(t *testing.T) {
	pool := testPool(t)
	table := newOutboxTable(t, pool)
	pub := newPublisher(t, table)
	id := uuid.New()
	_, err := pub.Publish(context.Background(), pool,
		outbox.Event{ID: id, Type: "dup", Context: 1},
		outbox.Event{ID: id, Type: "dup", Context: 2},
	)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("err = %v, want unique violation", err)
	}
	if got := readRows(t, pool, table); len(got) != 0 {
		t.Fatalf("rows = %d, want 0", len(got))
	}
}

// BenchmarkPublish measures one committed transaction carrying n events.
func BenchmarkPublish(b *testing.B) {
	pool := testPool(b)
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			table := newOutboxTable(b, pool)
			pub := newPublisher(b, table)
			ctx := context.Background()
			events := make([]outbox.Event, n)
			for i := range events {
				events[i] = outbox.Event{Type: "bench", Context: map[string]any{"i": i, "email": "bench@example.com"}}
			}
			b.ResetTimer()
			for b.Loop() {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					_, err := pub.Publish(ctx, tx, events...)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
