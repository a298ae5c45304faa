package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/outbox-relay/relay/internal/config"
)

// fakeState is a State whose answer is a function field.
type fakeState struct {
	ready func(now time.Time) (bool, string)
}

func (f fakeState) Ready(now time.Time) (bool, string) { return f.ready(now) }

func TestHandler(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "outbox_relay_events_total 3\n")
	})
	clock := func() time.Time { return t0 }
	tests := []struct {
		name     string
		ready    bool
		pprof    bool
		method   string
		path     string
		wantCode int
		wantBody string
	}{
		{name: "healthz", path: "/healthz", wantCode: 200, wantBody: "ok"},
		{name: "healthz while not ready", path: "/healthz", ready: false, wantCode: 200},
		{name: "readyz ready", path: "/readyz", ready: true, wantCode: 200, wantBody: "ready: because"},
		{name: "readyz not ready", path: "/readyz", ready: false, wantCode: 503, wantBody: "not ready: because"},
		{name: "metrics", path: "/metrics", wantCode: 200, wantBody: "outbox_relay_events_total 3"},
		{name: "pprof off", path: "/debug/pprof/", wantCode: 404},
		{name: "pprof on", path: "/debug/pprof/", pprof: true, wantCode: 200, wantBody: "goroutine"},
		{name: "pprof cmdline", path: "/debug/pprof/cmdline", pprof: true, wantCode: 200},
		{name: "unknown path", path: "/nope", wantCode: 404},
		{name: "post readyz", method: http.MethodPost, path: "/readyz", wantCode: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := fakeState{ready: func(now time.Time) (bool, string) {
				if !now.Equal(t0) {
					t.Errorf("Ready got now=%s, want the handler's clock", now)
				}
				return tt.ready, "because"
			}}
			h := New(state, metrics, Options{Pprof: tt.pprof, Now: clock})
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Errorf("%s %s = %d, want %d", method, tt.path, rec.Code, tt.wantCode)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q does not contain %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
}

func TestOptionsLoad(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    bool
		wantErr bool
	}{
		{name: "off by default", want: false},
		{name: "env true", env: map[string]string{"RELAY_PPROF": "true"}, want: true},
		{name: "env 1", env: map[string]string{"RELAY_PPROF": "1"}, want: true},
		{name: "env empty", env: map[string]string{"RELAY_PPROF": ""}, want: false},
		{name: "flag", args: []string{"--pprof"}, want: true},
		{name: "flag wins", args: []string{"--pprof=false"}, env: map[string]string{"RELAY_PPROF": "true"}, want: false},
		{name: "bad env", env: map[string]string{"RELAY_PPROF": "maybe"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
			var o Options
			RegisterFlags(fs, &o)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := o.Load(fs, tt.env)
			var ce *config.Error
			if tt.wantErr != errors.As(err, &ce) {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && o.Pprof != tt.want {
				t.Errorf("Pprof = %v, want %v", o.Pprof, tt.want)
			}
		})
	}
}

// fakePage mounts one path, as the status page mounts its own.
type fakePage struct{}

func (fakePage) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "the page") })
}

func TestHandlerMountsThePage(t *testing.T) {
	state := fakeState{ready: func(time.Time) (bool, string) { return true, "ok" }}
	for _, tt := range []struct {
		name     string
		page     interface{ Register(*http.ServeMux) }
		wantCode int
	}{{"with a page", fakePage{}, 200}, {"without", nil, 404}} {
		t.Run(tt.name, func(t *testing.T) {
			h := New(state, http.NotFoundHandler(), Options{Page: tt.page})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
			if rec.Code != tt.wantCode {
				t.Errorf("GET / = %d, want %d", rec.Code, tt.wantCode)
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/healthz", nil))
			if rec.Code != 200 {
				t.Errorf("GET /healthz beside the page = %d, want 200", rec.Code)
			}
		})
	}
}

// /debug/pprof/cmdline shows the redacted command line it is given, not
// os.Args (where a password given as a flag would show).
func TestPprofCmdlineRedacted(t *testing.T) {
	h := New(fakeState{}, http.NotFoundHandler(), Options{Pprof: true, Cmdline: []string{"relay", "run", "--database-url=postgres://u:xxxxx@db/app"}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/debug/pprof/cmdline", nil))
	if got, want := rec.Body.String(), "relay\x00run\x00--database-url=postgres://u:xxxxx@db/app"; got != want {
		t.Errorf("/debug/pprof/cmdline = %q, want %q", got, want)
	}
}
