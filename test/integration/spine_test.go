package integration

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

func migrateAndRun(t *testing.T, e *testenv.Env, extra ...string) *testenv.Process {
	t.Helper()
	p := testenv.Start(t, relayBin, e.RelayEnv(extra...), "run")
	return p
}

// insertBatches commits txs transactions of per events each.
func insertBatches(ctx context.Context, t *testing.T, e *testenv.Env, txs, per int, tag string) {
	t.Helper()
	for i := 0; i < txs; i++ {
		_, err := e.PG.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT 'order_placed', 'test', jsonb_build_object('tag', $1::text, 'tx', $2::int, 'n', g)
			FROM generate_series(1, $3::int) g`, tag, i, per)
		if err != nil {
			t.Fatalf("insert tx %d: %v", i, err)
		}
	}
}

func TestDeliversTransactionsBulkInsertAndCopy(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := migrateAndRun(t, e, "CH_OUTBOX_BATCH_SIZE=5000")

	insertBatches(ctx, t, e, 1000, 100, "tx")
	if _, err := e.PG.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
		SELECT 'bulk', 'test', jsonb_build_object('n', g) FROM generate_series(1, 10000) g`); err != nil {
		t.Fatal(err)
	}
	rows := make([][]any, 5000)
	for i := range rows {
		rows[i] = []any{"copied", "test", fmt.Sprintf(`{"n": %d}`, i)}
	}
	if _, err := e.PG.CopyFrom(ctx, pgx.Identifier{"outbox_event"}, []string{"event_type", "environment", "event_context"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	const want = 100_000 + 10_000 + 5000
	c := e.WaitDelivered(t, want, 3*time.Minute, p)
	if c.Rows != want || c.Final != want {
		t.Fatalf("clickhouse rows=%d final=%d distinct=%d, want all %d", c.Rows, c.Final, c.Distinct, want)
	}
	// The slot does not pin WAL once everything is delivered.
	testenv.Eventually(t, 30*time.Second, "slot lag under 1 MiB", func() error {
		lag, err := e.SlotLag(ctx)
		if err != nil {
			return err
		}
		if lag >= 1<<20 {
			return fmt.Errorf("lag %d bytes", lag)
		}
		return nil
	})
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(time.Minute); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
