package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/api"
	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/testenv"
)

// EnsureSchema: before relay migrate it says to run it and creates
// nothing; after it, users and outbox_event.user_id; run again (as every
// start of relay api does), it changes nothing and keeps the rows.
func TestEnsureSchema(t *testing.T) {
	t.Parallel()
	e := testenv.NewBare(t)
	ctx := context.Background()
	err := api.EnsureSchema(ctx, e.PG)
	if err == nil || !strings.Contains(err.Error(), "run `relay migrate` first") {
		t.Fatalf("EnsureSchema without outbox_event = %v, want it to say to run relay migrate", err)
	}
	var users bool
	if err := e.PG.QueryRow(ctx, "SELECT to_regclass('users') IS NOT NULL").Scan(&users); err != nil || users {
		t.Fatalf("users exists %t (%v) after a failed EnsureSchema, want the transaction rolled back", users, err)
	}
	if err := migrate.Postgres(ctx, e.DatabaseURL, e.Publication, true, migrate.Named(migrate.DefaultOutbox), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := api.EnsureSchema(ctx, e.PG); err != nil {
			t.Fatalf("EnsureSchema %d: %v", i+1, err)
		}
		if i == 0 {
			if _, err := e.PG.Exec(ctx, `WITH u AS (INSERT INTO users (email, first_name, last_name) VALUES ('a@example.com', 'A', 'B') RETURNING id)
				INSERT INTO outbox_event (event_type, environment, event_context, user_id) SELECT 'user_created', 'test', '{}', id FROM u`); err != nil {
				t.Fatalf("write through the demo's schema: %v", err)
			}
		}
	}
	var n int
	if err := e.PG.QueryRow(ctx, "SELECT count(*) FROM users JOIN outbox_event ON user_id = users.id").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d users joined to their event (%v) after EnsureSchema twice, want 1", n, err)
	}
}
