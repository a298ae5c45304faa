package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/internal/payload"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/outbox"
)

// decoded is one message read back from a slot.
type decoded struct {
	transactional bool
	prefix        string
	f             payload.Fields
}

// newMessageSlot creates a pgoutput slot (and an empty publication, which
// pgoutput requires) that sees what is published after this call.
func newMessageSlot(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	ctx := context.Background()
	name := "outbox_msg_" + strings.ReplaceAll(uuid.NewString()[:13], "-", "")
	if _, err := pool.Exec(ctx, `CREATE PUBLICATION `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create publication: %v", err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name); err != nil {
		t.Fatalf("create slot: %v", err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, name)
		_, _ = pool.Exec(context.Background(), `DROP PUBLICATION `+pgx.Identifier{name}.Sanitize())
	})
	return name
}

// slotMessages decodes the logical decoding messages the slot holds, once
// it holds at least want: a commit becomes readable only when its WAL is
// flushed, which with synchronous_commit off trails the commit itself.
func slotMessages(t *testing.T, pool *pgxpool.Pool, slot string, want int) []decoded {
	t.Helper()
	var got []decoded
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("%d messages in the slot", want), func() error {
		if got = peekMessages(t, pool, slot); len(got) < want {
			return fmt.Errorf("%d so far", len(got))
		}
		return nil
	})
	return got
}

func peekMessages(t *testing.T, pool *pgxpool.Pool, slot string) []decoded {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT data FROM pg_logical_slot_peek_binary_changes($1::name, NULL, NULL,
		'proto_version', '1', 'publication_names', $1::text, 'messages', 'true')`, slot)
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	datas, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	var out []decoded
	for _, d := range datas {
		m, err := pglogrepl.Parse(d)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		ldm, ok := m.(*pglogrepl.LogicalDecodingMessage)
		if !ok {
			continue
		}
		f, err := payload.Decode(ldm.Content)
		if err != nil {
			t.Fatalf("decode payload: %v", err)
		}
		out = append(out, decoded{transactional: ldm.Transactional, prefix: ldm.Prefix, f: f})
	}
	return out
}

func newMessagePublisher(t *testing.T, prefix string, opts ...outbox.Option) *outbox.Publisher {
	t.Helper()
	pub, err := outbox.NewPublisher("it", append(opts, outbox.WithMessages(prefix))...)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// Committed messages arrive transactional, in call order, value-exact; a
// rolled-back transaction's never do.
func TestIntegrationMessagesCommitAndRollback(t *testing.T) {
	pool := testPool(t)
	slot := newMessageSlot(t, pool)
	pub := newMessagePublisher(t, "outbox_it", outbox.WithMaxContextBytes(6<<20))
	ctx := context.Background()
	at := time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC)
	big := `"` + strings.Repeat("y", 5<<20) + `"`
	var ids []uuid.UUID
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		ids, err = pub.Publish(ctx, tx,
			outbox.Event{Type: "a", OccurredAt: at, Context: map[string]any{"s": "ü"}, MetadataVersion: 3},
			outbox.Event{Type: "big", Context: json.RawMessage(big)},
		)
		return err
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	errBusiness := errors.New("business step failed")
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := pub.Publish(ctx, tx, outbox.Event{Type: "rolled_back", Context: 1}); err != nil {
			return err
		}
		return errBusiness
	})
	if !errors.Is(err, errBusiness) {
		t.Fatalf("err = %v", err)
	}
	// A later committed message: once it is readable, so would be the
	// rolled-back one had it been decoded.
	if _, err := pub.Publish(ctx, pool, outbox.Event{Type: "marker", Context: 1}); err != nil {
		t.Fatalf("publish marker: %v", err)
	}
	got := slotMessages(t, pool, slot, 3)
	if len(got) != 3 || string(got[2].f.Type) != "marker" {
		t.Fatalf("messages = %d, want 2 and the marker (the rolled-back one must not be decoded)", len(got))
	}
	want := []struct {
		id      uuid.UUID
		typ     string
		at      time.Time
		context string
		version int64
	}{
		{ids[0], "a", at.Truncate(time.Microsecond), `{"s":"ü"}`, 3},
		{ids[1], "big", time.Time{}, big, 1},
	}
	for i, w := range want {
		g := got[i]
		if !g.transactional || g.prefix != "outbox_it" {
			t.Errorf("message %d: transactional %v prefix %q", i, g.transactional, g.prefix)
		}
		if uuid.UUID(g.f.ID) != w.id || string(g.f.Type) != w.typ || string(g.f.Environment) != "it" ||
			string(g.f.Context) != w.context || g.f.MetadataVersion != w.version {
			t.Errorf("message %d = id %s type %s env %s version %d context %.40s, want %+v",
				i, uuid.UUID(g.f.ID), g.f.Type, g.f.Environment, g.f.MetadataVersion, g.f.Context, w)
		}
		if !w.at.IsZero() && g.f.OccurredAtMicros != w.at.UnixMicro() {
			t.Errorf("message %d time = %d, want %d", i, g.f.OccurredAtMicros, w.at.UnixMicro())
		}
	}
}

// Message mode works however the caller's pool talks to Postgres.
func TestIntegrationMessagesQueryExecModes(t *testing.T) {
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
			slot := newMessageSlot(t, pool)
			pub := newMessagePublisher(t, "outbox_it")
			events := make([]outbox.Event, 300)
			for i := range events {
				events[i] = outbox.Event{Type: "m", Context: map[string]any{"i": i, "q": `" \ {`}}
			}
			ids, err := pub.Publish(context.Background(), pool, events...)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			got := slotMessages(t, pool, slot, len(ids))
			if len(got) != len(ids) {
				t.Fatalf("messages = %d, want %d", len(got), len(ids))
			}
			for i, g := range got {
				if uuid.UUID(g.f.ID) != ids[i] {
					t.Fatalf("message %d has id %s, want %s (call order)", i, uuid.UUID(g.f.ID), ids[i])
				}
			}
		})
	}
}

// Extra columns in message mode, however the pool talks to Postgres: the
// values arrive in their types' binary send format, in event order, the
// modifier applied, the default for a column left out; an over-long
// value is refused as an INSERT refuses it (22001), nothing emitted.
func TestIntegrationMessageColumnsQueryExecModes(t *testing.T) {
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
			ctx := context.Background()
			table := newOutboxTable(t, pool)
			ident := pgx.Identifier{table}.Sanitize()
			if _, err := pool.Exec(ctx, `ALTER TABLE `+ident+` ADD COLUMN n integer, ADD COLUMN s varchar(3) NOT NULL DEFAULT 'd',
				ADD COLUMN g integer GENERATED ALWAYS AS (n * 2) STORED`); err != nil {
				t.Fatal(err)
			}
			cols, err := outbox.ColumnTypes(ctx, pool, table)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range cols {
				names = append(names, c.String())
			}
			if want := `"n" integer; "s" character varying(3) NOT NULL DEFAULT 'd'::character varying`; !strings.HasSuffix(strings.Join(names, "; "), want) {
				t.Fatalf("ColumnTypes = %s, want it to end with %s (no generated column)", strings.Join(names, "; "), want)
			}
			slot := newMessageSlot(t, pool)
			pub := newMessagePublisher(t, "outbox_it", outbox.WithColumnTypes(cols...))
			_, err = pub.Publish(ctx, pool,
				outbox.Event{Type: "a", Context: 1, Columns: map[string]any{"n": 42, "s": "abc"}},
				outbox.Event{Type: "b", Context: 2, Columns: map[string]any{"n": nil}})
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			_, err = pub.Publish(ctx, pool, outbox.Event{Type: "c", Context: 3, Columns: map[string]any{"s": "abcd"}})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "22001" {
				t.Fatalf("over-long varchar(3): err = %v, want 22001 as an INSERT gives", err)
			}
			got := slotMessages(t, pool, slot, 2)
			if len(got) != 2 {
				t.Fatalf("messages = %d, want 2 (none of the refused call)", len(got))
			}
			want := [][]string{{"0000002a", "616263"}, {"NULL", "64"}}
			for i, g := range got {
				var vals []string
				err := g.f.Values(func(_ int, val []byte, null bool) error {
					if null {
						vals = append(vals, "NULL")
					} else {
						vals = append(vals, fmt.Sprintf("%x", val))
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(vals) < 2 || strings.Join(vals[len(vals)-2:], " ") != strings.Join(want[i], " ") {
					t.Errorf("message %d values = %v, want ... %v", i, vals, want[i])
				}
			}
		})
	}
}
