package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/api"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/outbox"
)

// The demo API stamps the created user's id on its user_created event
// (outbox_event.user_id, migration 00006); the relay adds event_log.user_id
// and every event carries its user's id there.
func TestEvolutionAPIStampsUserID(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	cols, err := outbox.TableColumns(ctx, e.PG)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := outbox.NewPublisher("test", outbox.WithColumns(cols...))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.HasColumn("user_id") {
		t.Fatalf("TableColumns = %v, want user_id among them", cols)
	}
	srv, err := api.New(api.Config{}, e.PG, pub, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	p := startRelay(t, e)
	client := &http.Client{Timeout: 5 * time.Second}
	const n = 5
	for i := range n {
		if code, err := postUser(client, ts.URL, "u"+strings.Repeat("x", i)+"@example.com"); err != nil || code != http.StatusCreated {
			t.Fatalf("POST /users: %d %v", code, err)
		}
	}
	e.WaitDelivered(t, n, time.Minute, p)
	var stamped uint64
	err = e.CH.QueryRow(ctx, `SELECT count() FROM event_log FINAL
		WHERE event_type = 'user_created' AND position(event_context, concat('"id": "', toString(user_id), '"')) > 0`).Scan(&stamped)
	if err != nil || stamped != n {
		t.Errorf("%d user_created events carry their user's id in event_log.user_id (%v), want %d", stamped, err, n)
	}
	// relay status shows the mapping in force.
	_, out := runRelayCmd(t, 30*time.Second, e.RelayEnv(), "status", "--json")
	var st struct {
		Columns []struct {
			Name, PostgresType, ClickHouseType, EventLogType, State string
		} `json:"columns"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
		t.Fatalf("relay status --json: %v\n%s", err, out)
	}
	if len(st.Columns) != 1 || st.Columns[0].Name != "user_id" || st.Columns[0].State != "written" {
		t.Errorf("relay status columns = %+v, want user_id written", st.Columns)
	}
}

// The outbox package writes extra columns, and refuses one the table does
// not have with a message that names it.
func TestEvolutionPublisherColumns(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	if _, err := e.PG.Exec(ctx, "ALTER TABLE outbox_event ADD COLUMN amount numeric(12,2), ADD COLUMN tags text[]"); err != nil {
		t.Fatal(err)
	}
	cols, err := outbox.TableColumns(ctx, e.PG)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := outbox.NewPublisher("test", outbox.WithColumns(cols...))
	if err != nil {
		t.Fatal(err)
	}
	user := uuid.New()
	ids, err := pub.Publish(ctx, e.PG,
		outbox.Event{Type: "paid", Context: map[string]int{"n": 1}, Columns: map[string]any{"amount": "12.34", "user_id": user, "tags": []string{"a", "b"}}},
		outbox.Event{Type: "plain", Context: map[string]int{"n": 2}},
	)
	if err != nil {
		t.Fatal(err)
	}
	var amount, tags, userID *string
	if err := e.PG.QueryRow(ctx, "SELECT amount::text, tags::text, user_id::text FROM outbox_event WHERE id = $1", ids[0]).Scan(&amount, &tags, &userID); err != nil {
		t.Fatal(err)
	}
	if amount == nil || *amount != "12.34" || tags == nil || *tags != "{a,b}" || userID == nil || *userID != user.String() {
		t.Errorf("row = amount %v tags %v user_id %v, want 12.34 {a,b} %s", amount, tags, userID, user)
	}
	if err := e.PG.QueryRow(ctx, "SELECT amount::text FROM outbox_event WHERE id = $1", ids[1]).Scan(&amount); err != nil || amount != nil {
		t.Errorf("the event without columns has amount %v (%v), want NULL", amount, err)
	}
	_, err = pub.Publish(ctx, e.PG, outbox.Event{Type: "x", Context: map[string]int{}, Columns: map[string]any{"tenant": "acme"}})
	var ve *outbox.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, outbox.ErrUnknownColumn) || !strings.Contains(err.Error(), `"tenant" is not an extra column of "outbox_event"`) {
		t.Errorf("Publish with an unknown column = %v, want a ValidationError naming it", err)
	}
}
