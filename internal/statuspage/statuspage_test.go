package statuspage

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/status"
)

func TestHistory(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h := NewHistory(20*time.Second, 5*time.Second) // 4 samples
	h.Add(at(0), Counters{Events: 100, LagSum: 10, LagCount: 10})
	if got := h.Samples(); len(got) != 0 {
		t.Fatalf("after the base reading: %d samples, want 0", len(got))
	}
	h.Add(at(5), Counters{Events: 150, LagSum: 14, LagCount: 12})  // 10 ev/s, 2 s mean lag
	h.Add(at(10), Counters{Events: 150, LagSum: 14, LagCount: 12}) // idle: no lag
	s := h.Samples()
	if len(s) != 2 || s[0].EventsPerSecond != 10 || s[0].LagSeconds == nil || *s[0].LagSeconds != 2 ||
		s[1].EventsPerSecond != 0 || s[1].LagSeconds != nil {
		t.Fatalf("samples = %+v", s)
	}
	// A counter going down (new registry) restarts the base: no sample.
	h.Add(at(15), Counters{Events: 1})
	if got := len(h.Samples()); got != 2 {
		t.Fatalf("after a reset: %d samples, want 2", got)
	}
	for i := 4; i <= 9; i++ { // wrap the ring
		h.Add(at(5*i), Counters{Events: float64(1 + 5*(i-3))})
	}
	s = h.Samples()
	if len(s) != 4 || !s[0].T.Equal(at(30)) || !s[3].T.Equal(at(45)) {
		t.Fatalf("after wrapping: %d samples from %v to %v, want 4 from %v to %v", len(s), s[0].T, s[len(s)-1].T, at(30), at(45))
	}
	for _, x := range s {
		if x.EventsPerSecond != 1 {
			t.Errorf("sample at %v: %g ev/s, want 1", x.T, x.EventsPerSecond)
		}
	}
}

func TestReadCounters(t *testing.T) {
	m := metrics.New()
	m.EventsTotal.Add(42)
	m.EndToEndLag.Observe(0.5)
	m.EndToEndLag.Observe(1.5)
	m.LastFlushTimestamp.Set(1700000000.5)
	m.LastFlushEvents.Set(7)
	m.LastFlushBytes.Set(2048)
	c, err := ReadCounters(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	want := Counters{Events: 42, LagSum: 2, LagCount: 2, LastFlushUnix: 1700000000.5, LastFlushEvents: 7, LastFlushBytes: 2048}
	if c != want {
		t.Errorf("counters = %+v, want %+v", c, want)
	}
}

func newTestPage(t *testing.T, gather func(context.Context) (*status.Report, error)) http.Handler {
	t.Helper()
	m := metrics.New()
	m.LastFlushTimestamp.Set(1700000000)
	m.LastFlushEvents.Set(3)
	cfg := config.Defaults()
	cfg.ClickHouseURL = "clickhouse://u:topsecret@ch:9000/db"
	p, err := New(Options{Gather: gather, Metrics: m.Registry(), History: NewHistory(15*time.Minute, 5*time.Second),
		Every: 5 * time.Second, Settings: cfg.Settings(), Version: "v1.2.3", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	return mux
}

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
	return rec
}

func TestPageServesReportAndIsReadOnly(t *testing.T) {
	calls := 0
	h := newTestPage(t, func(context.Context) (*status.Report, error) {
		calls++
		return &status.Report{Slot: "s", Verdict: status.Warning, Reasons: []string{"WARNING: x"}}, nil
	})
	rec := get(t, h, "GET", "/")
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `<script id="data" type="application/json">`) ||
		!strings.Contains(body, `"verdict":"WARNING"`) || !strings.Contains(body, "static/page.js") {
		t.Fatalf("GET / = %d:\n%s", rec.Code, body)
	}
	if strings.Contains(body, "topsecret") {
		t.Error("the page shows the ClickHouse password")
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	rec = get(t, h, "GET", "/status.json")
	var s Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || s.Report == nil || s.Report.Verdict != status.Warning ||
		s.Version != "v1.2.3" || s.LastFlush == nil || s.LastFlush.Events != 3 || s.WindowSeconds != 900 {
		t.Fatalf("GET /status.json = %d %v: %s", rec.Code, err, rec.Body.String())
	}
	if calls != 1 {
		t.Errorf("two requests within %s gathered %d times, want once", MinGatherInterval, calls)
	}
	for _, path := range []string{"/static/page.js", "/static/page.css"} {
		if rec := get(t, h, "GET", path); rec.Code != 200 || rec.Body.Len() == 0 {
			t.Errorf("GET %s = %d", path, rec.Code)
		}
	}
	for _, path := range []string{"/", "/status.json"} {
		if rec := get(t, h, "POST", path); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d, want 405", path, rec.Code)
		}
	}
	if rec := get(t, h, "GET", "/nothing"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", rec.Code)
	}
}

// /static/ serves the stylesheet and the script, nothing else: not the
// page's template, not a directory listing.
func TestStaticServesOnlyTheAssets(t *testing.T) {
	h := newTestPage(t, func(context.Context) (*status.Report, error) { return &status.Report{}, nil })
	for _, path := range []string{"/static/", "/static/index.html", "/static/./index.html", "/static/..%2findex.html", "/static/page.js/"} {
		rec := get(t, h, "GET", path)
		if body := rec.Body.String(); rec.Code == 200 || strings.Contains(body, "{{") || strings.Contains(body, "page.css") {
			t.Errorf("GET %s = %d:\n%.200s", path, rec.Code, body)
		}
	}
}

func TestPageShowsAGatherError(t *testing.T) {
	h := newTestPage(t, func(context.Context) (*status.Report, error) { return nil, errors.New("connection refused") })
	var s Snapshot
	rec := get(t, h, "GET", "/status.json")
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || s.Report != nil || s.Error != "connection refused" {
		t.Fatalf("GET /status.json = %d: %s", rec.Code, rec.Body.String())
	}
	if rec := get(t, h, "GET", "/"); rec.Code != 200 || !strings.Contains(rec.Body.String(), "ERROR") {
		t.Errorf("GET / with PostgreSQL down = %d", rec.Code)
	}
}

// The machines have no internet: nothing may be loaded from elsewhere.
func TestAssetsLoadNothingFromElsewhere(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads from elsewhere: %s", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
