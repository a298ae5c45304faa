package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/outbox"
)

func userBody(email string) string {
	return fmt.Sprintf(`{"email":%q,"first_name":"Ada","last_name":"Lovelace"}`, email)
}

func TestIntegrationCreateThenGetUser(t *testing.T) {
	e := newDBEnv(t)
	email := e.email("ada")
	r := e.post(t, e.ts.Client(), userBody(email))
	if r.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	var created User
	if err := json.Unmarshal(r.body, &created); err != nil {
		t.Fatal(err)
	}
	if created.Email != email || created.FirstName != "Ada" || created.LastName != "Lovelace" || created.CreatedAt.Location() != time.UTC {
		t.Errorf("created = %+v", created)
	}
	loc := r.header.Get("Location")
	if loc != "/users/"+created.ID.String() {
		t.Fatalf("Location = %q", loc)
	}

	r = e.get(t, loc)
	var got User
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil || got != created {
		t.Fatalf("GET = %d %s, want %+v", r.status, r.body, created)
	}
	if r = e.get(t, "/users/00000000-0000-4000-8000-000000000000"); r.status != 404 {
		t.Fatalf("GET unknown = %d, want 404", r.status)
	}
	assertUserCreatedEvent(t, e, created)
}

// assertUserCreatedEvent checks the single outbox row written for u.
func assertUserCreatedEvent(t *testing.T, e *dbEnv, u User) {
	t.Helper()
	var (
		typ, env string
		at       time.Time
		version  int64
		ctxJSON  []byte
	)
	err := e.pool.QueryRow(context.Background(),
		`SELECT event_type, environment, event_date_time, metadata_version, event_context FROM `+e.ident()+
			` WHERE event_context->>'email' = $1`, u.Email).Scan(&typ, &env, &at, &version, &ctxJSON)
	if err != nil {
		t.Fatalf("read event: %v", err)
	}
	if typ != EventUserCreated || env != "test" || version != 1 || !at.Equal(u.CreatedAt) {
		t.Errorf("event = %s %s %v v%d, want user_created test %v v1", typ, env, at, version, u.CreatedAt)
	}
	var got map[string]any
	if err := json.Unmarshal(ctxJSON, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": u.ID.String(), "email": u.Email, "first_name": u.FirstName, "last_name": u.LastName,
		"created_at": u.CreatedAt.Format(time.RFC3339Nano),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event context = %v, want exactly %v", got, want)
	}
}

func TestIntegrationDuplicateEmailConflicts(t *testing.T) {
	e := newDBEnv(t)
	email := e.email("dup")
	tests := []struct {
		name       string
		email      string
		wantStatus int
	}{
		{name: "first", email: email, wantStatus: 201},
		{name: "same again", email: email, wantStatus: 409},
		{name: "domain case differs", email: strings.Replace(email, "@example.test", "@Example.TEST", 1), wantStatus: 409},
	}
	for _, tt := range tests {
		r := e.post(t, e.ts.Client(), userBody(tt.email))
		if r.status != tt.wantStatus {
			t.Fatalf("%s: POST = %d %s, want %d", tt.name, r.status, r.body, tt.wantStatus)
		}
		if tt.wantStatus == 409 {
			if p := decodeProblemBody(t, r.body); p.Type != problemEmailTaken {
				t.Errorf("%s: problem = %+v", tt.name, p)
			}
		}
	}
	if users, events := e.counts(t, email); users != 1 || events != 1 {
		t.Fatalf("users=%d events=%d, want 1 and 1", users, events)
	}
	if n := len(e.sentry.Events()); n != 0 {
		t.Errorf("sentry events = %d; a conflict is not a server error", n)
	}
}

// A failure at any step of the transaction leaves neither user nor event.
func TestIntegrationCreateIsAtomic(t *testing.T) {
	errInjected := errors.New("injected")
	tests := []struct {
		name   string
		failAt string
		// check runs inside the transaction right before the failing step.
		check func(t *testing.T, tx pgx.Tx, e *dbEnv, email string)
	}{
		{name: "business insert fails", failAt: stepInsertUser},
		{
			name:   "event write fails after user insert",
			failAt: stepPublishEvent,
			check: func(t *testing.T, tx pgx.Tx, e *dbEnv, email string) {
				assertCountsIn(t, tx, e, email, 1, 0)
			},
		},
		{
			name:   "failure after the event was written",
			failAt: stepCommit,
			check: func(t *testing.T, tx pgx.Tx, e *dbEnv, email string) {
				assertCountsIn(t, tx, e, email, 1, 1)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *dbEnv
			email := ""
			reached := false
			e = newDBEnv(t, withStepHook(func(_ context.Context, step string, tx pgx.Tx) error {
				if step != tt.failAt {
					return nil
				}
				reached = true
				if tt.check != nil {
					tt.check(t, tx, e, email)
				}
				return errInjected
			}))
			email = e.email("atomic")
			r := e.post(t, e.ts.Client(), userBody(email))
			if r.status != 500 || !reached {
				t.Fatalf("POST = %d %s (hook reached %v), want 500", r.status, r.body, reached)
			}
			if users, events := e.counts(t, email); users != 0 || events != 0 {
				t.Fatalf("after failure users=%d events=%d, want none", users, events)
			}
			if n := len(e.sentry.Events()); n != 1 {
				t.Errorf("sentry events = %d, want 1", n)
			}
		})
	}
}

func assertCountsIn(t *testing.T, tx pgx.Tx, e *dbEnv, email string, wantUsers, wantEvents int) {
	t.Helper()
	var users, events int
	err := tx.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM users WHERE email = $1), (SELECT count(*) FROM `+e.ident()+` WHERE event_context->>'email' = $1)`,
		email).Scan(&users, &events)
	if err != nil {
		t.Errorf("count in tx: %v", err)
		return
	}
	if users != wantUsers || events != wantEvents {
		t.Errorf("inside tx users=%d events=%d, want %d and %d", users, events, wantUsers, wantEvents)
	}
}

// A real database error on the outbox insert (here: the table is missing)
// must roll the user back too.
func TestIntegrationOutboxFailureRollsBackUser(t *testing.T) {
	e := newDBEnv(t)
	pub, err := outbox.NewPublisher("test", outbox.WithTable(e.table+"_missing"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{}, e.pool, pub, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	email := e.email("noevent")
	w := (&fixture{srv: srv}).do(http.MethodPost, "/users", "application/json", userBody(email))
	if w.Code != 500 {
		t.Fatalf("status = %d, want 500: %s", w.Code, w.Body)
	}
	if users, _ := e.counts(t, email); users != 0 {
		t.Fatalf("users = %d, want 0", users)
	}
}

// concurrentPosts fires one POST per body at once and returns the statuses.
func concurrentPosts(t *testing.T, e *dbEnv, bodies []string) map[int]int {
	t.Helper()
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: len(bodies)}}
	t.Cleanup(client.CloseIdleConnections)
	statuses := make([]int, len(bodies))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Go(func() {
			<-start
			statuses[i] = e.post(t, client, body).status
		})
	}
	close(start)
	wg.Wait()
	hist := map[int]int{}
	for _, s := range statuses {
		hist[s]++
	}
	return hist
}

func TestIntegrationConcurrentDistinctEmails(t *testing.T) {
	const n = 500
	e := newDBEnv(t)
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = userBody(e.email(fmt.Sprintf("c%03d", i)))
	}
	if hist := concurrentPosts(t, e, bodies); hist[201] != n {
		t.Fatalf("statuses = %v, want %d×201", hist, n)
	}
	if users, events := e.counts(t, ""); users != n || events != n {
		t.Fatalf("users=%d events=%d, want %d each", users, events, n)
	}
	var paired int
	err := e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM users u JOIN `+e.ident()+` ev ON ev.event_context->>'id' = u.id::text WHERE u.email LIKE '%' || $1`,
		e.emailTail()).Scan(&paired)
	if err != nil || paired != n {
		t.Fatalf("users with their own event = %d (%v), want %d", paired, err, n)
	}
}

func TestIntegrationConcurrentSameEmail(t *testing.T) {
	const n = 50
	e := newDBEnv(t)
	email := e.email("race")
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = userBody(email)
	}
	hist := concurrentPosts(t, e, bodies)
	if hist[201] != 1 || hist[409] != n-1 {
		t.Fatalf("statuses = %v, want 1×201 and %d×409", hist, n-1)
	}
	if users, events := e.counts(t, email); users != 1 || events != 1 {
		t.Fatalf("users=%d events=%d, want exactly one each", users, events)
	}
}
