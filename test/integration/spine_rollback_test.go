package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestRolledBackTransactionsDeliverNothing streams committed transactions,
// a rolled-back one (small and large), and committed ones with savepoints
// rolled back inside; exactly the committed events reach ClickHouse.
func TestRolledBackTransactionsDeliverNothing(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, 30*time.Second)

	want := map[string]int{}
	commit := func(tags ...string) {
		t.Helper()
		spineTx(ctx, t, e, func(tx pgx.Tx) {
			for _, tag := range tags {
				spineInsert(ctx, t, tx, tag)
			}
		}, true)
		for _, tag := range tags {
			want[tag]++
		}
	}

	commit("c1")
	commit("c2a", "c2b", "c2c")
	// A rolled-back transaction, then one big enough to be decoded in
	// several WAL pages before its abort.
	spineTx(ctx, t, e, func(tx pgx.Tx) {
		spineInsert(ctx, t, tx, "rb1")
		spineInsert(ctx, t, tx, "rb2")
	}, false)
	spineTx(ctx, t, e, func(tx pgx.Tx) {
		mustExec(ctx, t, tx, `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT $1, $2, jsonb_build_object('tag', 'rb-big-' || g) FROM generate_series(1, 2000) g`,
			spineEventType, spineEnvironment)
	}, false)
	commit("c3")
	// Committed transaction with a rolled-back savepoint, a released one,
	// and a nested savepoint rolled back inside a released one.
	spineTx(ctx, t, e, func(tx pgx.Tx) {
		spineInsert(ctx, t, tx, "sp-keep1")
		mustExec(ctx, t, tx, "SAVEPOINT a")
		spineInsert(ctx, t, tx, "sp-rb1")
		spineInsert(ctx, t, tx, "sp-rb2")
		mustExec(ctx, t, tx, "ROLLBACK TO SAVEPOINT a")
		spineInsert(ctx, t, tx, "sp-keep2")
		mustExec(ctx, t, tx, "SAVEPOINT b")
		spineInsert(ctx, t, tx, "sp-keep3")
		mustExec(ctx, t, tx, "SAVEPOINT c")
		spineInsert(ctx, t, tx, "sp-rb3")
		mustExec(ctx, t, tx, "ROLLBACK TO SAVEPOINT c")
		mustExec(ctx, t, tx, "RELEASE SAVEPOINT b")
		spineInsert(ctx, t, tx, "sp-keep4")
	}, true)
	for _, tag := range []string{"sp-keep1", "sp-keep2", "sp-keep3", "sp-keep4"} {
		want[tag]++
	}
	// A rolled-back transaction whose savepoint was released: still nothing.
	spineTx(ctx, t, e, func(tx pgx.Tx) {
		mustExec(ctx, t, tx, "SAVEPOINT d")
		spineInsert(ctx, t, tx, "rb-released")
		mustExec(ctx, t, tx, "RELEASE SAVEPOINT d")
	}, false)
	commit("marker")

	testenv.Eventually(t, 30*time.Second, "marker event in ClickHouse", func() error {
		if p.Exited() {
			t.Fatalf("relay exited:\n%s", p.Output())
		}
		got, err := spineTags(ctx, e, true)
		if err != nil {
			return err
		}
		if got["marker"] == 0 {
			return fmt.Errorf("%d events so far, no marker", len(got))
		}
		return nil
	})
	for _, final := range []bool{true, false} {
		got, err := spineTags(ctx, e, final)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("event_log (FINAL=%t) tags:\n got %v\nwant %v", final, spineSortedKeys(got), spineSortedKeys(want))
			for tag, n := range got {
				if want[tag] != n {
					t.Errorf("tag %q: %d rows, want %d", tag, n, want[tag])
				}
			}
		}
	}
	testenv.Eventually(t, 10*time.Second, "outbox emptied", func() error {
		n, err := e.OutboxRows(ctx)
		if err == nil && n != 0 {
			err = fmt.Errorf("%d rows left", n)
		}
		return err
	})
}

// spineTx runs fn in a transaction and commits it, or rolls it back.
func spineTx(ctx context.Context, t *testing.T, e *testenv.Env, fn func(pgx.Tx), commit bool) {
	t.Helper()
	tx, err := e.PG.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	fn(tx)
	if !commit {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		return
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func spineInsert(ctx context.Context, t *testing.T, db spineExecer, tag string) {
	t.Helper()
	if err := insertTagged(ctx, db, tag); err != nil {
		t.Fatalf("insert %s: %v", tag, err)
	}
}

func mustExec(ctx context.Context, t *testing.T, db spineExecer, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func spineSortedKeys(m map[string]int) []string {
	return slices.Sorted(maps.Keys(m))
}
