package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func decodeProblemBody(t *testing.T, body []byte) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return p
}

// No request in this table may reach the database: fakeDB fails every call.
func TestCreateUserRejectsBadRequests(t *testing.T) {
	long := strings.Repeat("a", 101)
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantDetail  string
		wantFields  []string
	}{
		{name: "no content type", body: `{}`, wantStatus: 415},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: `email=a`, wantStatus: 415},
		{name: "json with charset ok but invalid", contentType: "application/json; charset=utf-8", body: `{}`, wantStatus: 422, wantFields: []string{"email", "first_name", "last_name"}},
		{name: "empty body", contentType: "application/json", body: ``, wantStatus: 400, wantDetail: "body is empty"},
		{name: "malformed", contentType: "application/json", body: `{"email":`, wantStatus: 400, wantDetail: "not well-formed"},
		{name: "syntax error", contentType: "application/json", body: `{email}`, wantStatus: 400, wantDetail: "not well-formed"},
		{name: "unknown field", contentType: "application/json", body: `{"email":"a@b.c","password":"x"}`, wantStatus: 400, wantDetail: `unknown field "password"`},
		{name: "wrong type", contentType: "application/json", body: `{"email":5}`, wantStatus: 400, wantDetail: `field "email" must be a JSON string`},
		{name: "array body", contentType: "application/json", body: `[]`, wantStatus: 400, wantDetail: "must be a JSON object"},
		{name: "two objects", contentType: "application/json", body: `{} {}`, wantStatus: 400, wantDetail: "single JSON object"},
		{name: "too large", contentType: "application/json", body: `{"email":"` + strings.Repeat("x", 1<<20) + `"}`, wantStatus: 413},
		{name: "too large after first object", contentType: "application/json", body: `{}` + strings.Repeat(" ", 1<<20) + `{}`, wantStatus: 413},
		{name: "missing fields", contentType: "application/json", body: `{"email":" "}`, wantStatus: 422, wantFields: []string{"email", "first_name", "last_name"}},
		{name: "bad email", contentType: "application/json", body: `{"email":"not-an-email","first_name":"A","last_name":"B"}`, wantStatus: 422, wantFields: []string{"email"}},
		{name: "display name email", contentType: "application/json", body: `{"email":"Ada <ada@example.com>","first_name":"A","last_name":"B"}`, wantStatus: 422, wantFields: []string{"email"}},
		{name: "email too long", contentType: "application/json", body: `{"email":"` + strings.Repeat("a", 250) + `@b.cd","first_name":"A","last_name":"B"}`, wantStatus: 422, wantFields: []string{"email"}},
		{name: "long name", contentType: "application/json", body: `{"email":"a@b.cd","first_name":"` + long + `","last_name":"B"}`, wantStatus: 422, wantFields: []string{"first_name"}},
		{name: "control char", contentType: "application/json", body: `{"email":"a@b.cd","first_name":"A","last_name":"B\u0000"}`, wantStatus: 422, wantFields: []string{"last_name"}},
	}
	f := newFixture(t, &fakeDB{}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(http.MethodPost, "/users", tt.contentType, tt.body)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.wantStatus, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type = %q", ct)
			}
			p := decodeProblemBody(t, w.Body.Bytes())
			if p.Status != tt.wantStatus || p.Instance != "/users" || p.RequestID == "" || p.Title == "" || p.Type == "" {
				t.Errorf("problem = %+v", p)
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.wantDetail)
			}
			var fields []string
			for _, fe := range p.Errors {
				fields = append(fields, fe.Field)
			}
			if strings.Join(fields, ",") != strings.Join(tt.wantFields, ",") {
				t.Errorf("field errors = %+v, want fields %v", p.Errors, tt.wantFields)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   createUserRequest
		want User
	}{
		{name: "trims", in: createUserRequest{Email: " a@b.cd ", FirstName: " Ada ", LastName: "L "}, want: User{Email: "a@b.cd", FirstName: "Ada", LastName: "L"}},
		{name: "lowercases domain only", in: createUserRequest{Email: "Ada.L@Example.COM", FirstName: "A", LastName: "B"}, want: User{Email: "Ada.L@example.com", FirstName: "A", LastName: "B"}},
		{name: "unicode names", in: createUserRequest{Email: "z@b.cd", FirstName: "Zoë", LastName: "Ñandú"}, want: User{Email: "z@b.cd", FirstName: "Zoë", LastName: "Ñandú"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := tt.in.normalize()
			if len(errs) > 0 || got != tt.want {
				t.Errorf("normalize = %+v %v, want %+v", got, errs, tt.want)
			}
		})
	}
}

func TestRoutingProblems(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		target     string
		wantStatus int
		wantAllow  string
	}{
		{name: "unknown path", method: "GET", target: "/nope", wantStatus: 404},
		{name: "wrong method", method: "DELETE", target: "/users/x", wantStatus: 405, wantAllow: "GET, HEAD"},
		{name: "get on collection", method: "GET", target: "/users", wantStatus: 405, wantAllow: "POST"},
		{name: "malformed id is not found", method: "GET", target: "/users/not-a-uuid", wantStatus: 404},
	}
	f := newFixture(t, &fakeDB{}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(tt.method, tt.target, "", "")
			if w.Code != tt.wantStatus || w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("got %d %q, want %d problem+json", w.Code, w.Header().Get("Content-Type"), tt.wantStatus)
			}
			if got := w.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if p := decodeProblemBody(t, w.Body.Bytes()); p.Status != tt.wantStatus {
				t.Errorf("problem status = %d", p.Status)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name     string
		incoming string
		keep     bool
	}{
		{name: "honored", incoming: "abc-123", keep: true},
		{name: "generated when absent", incoming: ""},
		{name: "replaced when too long", incoming: strings.Repeat("x", 129)},
		{name: "replaced when it has spaces", incoming: "a b"},
	}
	f := newFixture(t, &fakeDB{}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(http.MethodGet, "/healthz", "", "", requestIDHeader, tt.incoming)
			got := w.Header().Get(requestIDHeader)
			if tt.keep && got != tt.incoming {
				t.Errorf("request id = %q, want %q", got, tt.incoming)
			}
			if !tt.keep && (got == "" || got == tt.incoming) {
				t.Errorf("request id = %q, want a generated one", got)
			}
			if !strings.Contains(f.log.String(), `"request_id":"`+got+`"`) {
				t.Errorf("access log lacks request id %q: %s", got, f.log)
			}
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	tests := []struct {
		name       string
		target     string
		ping       func(context.Context) error
		wantStatus int
	}{
		{name: "healthz ignores db", target: "/healthz", wantStatus: 200},
		{name: "ready", target: "/readyz", ping: func(context.Context) error { return nil }, wantStatus: 200},
		{name: "not ready", target: "/readyz", wantStatus: 503},
		{name: "ping bounded by timeout", target: "/readyz", ping: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, &fakeDB{ping: tt.ping}, nil)
			w := f.do(http.MethodGet, tt.target, "", "")
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if n := len(f.sentry.Events()); n != 0 {
				t.Errorf("sentry events = %d; readiness failures are expected, not reported", n)
			}
		})
	}
}

func TestServerErrorsAreReportedOnce(t *testing.T) {
	tests := []struct {
		name      string
		db        *fakeDB
		method    string
		target    string
		body      string
		wantInMsg string
	}{
		{name: "begin fails", db: &fakeDB{}, method: "POST", target: "/users", body: `{"email":"a@b.cd","first_name":"A","last_name":"B"}`, wantInMsg: "begin: fake db"},
		{name: "select fails", db: &fakeDB{}, method: "GET", target: "/users/5b1f3c9e-2f4a-4c61-9c53-0a9c1f0d2b7e", wantInMsg: "select user: fake db"},
		{name: "handler panics", db: &fakeDB{queryRow: func(context.Context, string, ...any) pgx.Row { panic("boom") }}, method: "GET", target: "/users/5b1f3c9e-2f4a-4c61-9c53-0a9c1f0d2b7e", wantInMsg: "panic: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.db, nil)
			w := f.do(tt.method, tt.target, "application/json", tt.body, requestIDHeader, "req-42")
			if w.Code != 500 {
				t.Fatalf("status = %d, want 500; %s", w.Code, w.Body)
			}
			p := decodeProblemBody(t, w.Body.Bytes())
			if strings.Contains(p.Detail, "fake") || strings.Contains(p.Detail, "boom") || p.RequestID != "req-42" {
				t.Errorf("problem leaks internals or lacks id: %+v", p)
			}
			events := f.sentry.Events()
			if len(events) != 1 {
				t.Fatalf("sentry events = %d, want 1", len(events))
			}
			ev := events[0]
			if ev.Tags["request_id"] != "req-42" {
				t.Errorf("sentry tags = %v, want request_id req-42", ev.Tags)
			}
			if len(ev.Exception) == 0 || !strings.Contains(ev.Exception[len(ev.Exception)-1].Value, tt.wantInMsg) {
				t.Errorf("sentry exception = %+v, want %q", ev.Exception, tt.wantInMsg)
			}
			if logs := f.log.String(); !strings.Contains(logs, `"status":500`) || !strings.Contains(logs, tt.wantInMsg) {
				t.Errorf("access log = %s", logs)
			}
		})
	}
}

func TestAccessLogNeverHasBodies(t *testing.T) {
	secretish := "s3cr3t-value-in-body"
	f := newFixture(t, &fakeDB{}, nil)
	f.do(http.MethodPost, "/users", "application/json", `{"email":"`+secretish+`@b.cd","first_name":"`+secretish+`","last_name":"x"}`)
	f.do(http.MethodPost, "/users", "application/json", `{"email":"bad","first_name":"`+secretish+`"}`)
	logs := f.log.String()
	if strings.Contains(logs, secretish) {
		t.Fatalf("log contains body content: %s", logs)
	}
	for _, field := range []string{`"method":"POST"`, `"path":"/users"`, `"status":422`, `"status":500`, `"duration":`, `"bytes":`} {
		if !strings.Contains(logs, field) {
			t.Errorf("access log lacks %s: %s", field, logs)
		}
	}
}

func TestRecoverPanics(t *testing.T) {
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		wantRepanic bool
		wantStatus  int
	}{
		{name: "abort handler is re-raised", handler: func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }, wantRepanic: true},
		{name: "plain panic is a 500", handler: func(http.ResponseWriter, *http.Request) { panic("boom") }, wantStatus: 500},
		{
			name: "panic after headers keeps the sent status and is still reported",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusOK)
				panic("late boom")
			},
			wantStatus: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, &fakeDB{}, nil)
			h := withRequestID(f.srv.observe(f.srv.recoverPanics(tt.handler)))
			w := httptest.NewRecorder()
			repanicked := func() (re bool) {
				defer func() { re = recover() != nil }()
				h.ServeHTTP(w, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/x", nil))
				return false
			}()
			if repanicked != tt.wantRepanic {
				t.Fatalf("re-panicked = %v, want %v", repanicked, tt.wantRepanic)
			}
			if tt.wantRepanic {
				return
			}
			if w.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if n := len(f.sentry.Events()); n != 1 {
				t.Errorf("sentry events = %d, want 1", n)
			}
		})
	}
}
