// Package statuspage is the page `relay run` serves at / on its admin
// address: the verdict and the figures of `relay status` (gathered by
// package status, with the same queries), the last flush, throughput and
// end-to-end lag of the last 15 minutes, and the configuration with secrets
// redacted. It is read-only (GET only) and self-contained: HTML, CSS and
// JavaScript are embedded in the binary, the charts are inline SVG, nothing
// is loaded from elsewhere. The page refreshes itself from /status.json.
//
// The servers are queried when the page asks, at most once per
// MinGatherInterval however many pages are open; the charts come from a
// History the relay fills from its own metrics (Record), so they cost no
// query.
package statuspage

import (
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/status"
)

// Defaults of Options.
const (
	// MinGatherInterval is the shortest time between two status gathers.
	MinGatherInterval = 2 * time.Second
	// DefaultRefresh is how often the page reloads its figures.
	DefaultRefresh = 5 * time.Second
	// gatherTimeout bounds one gather (PostgreSQL and ClickHouse).
	gatherTimeout = 10 * time.Second
)

//go:embed assets
var assets embed.FS

// Options say where the page's figures come from.
type Options struct {
	// Gather reads and judges a status report (status.Gather, Judge).
	Gather func(ctx context.Context) (*status.Report, error)
	// Metrics is the relay's registry (last flush).
	Metrics prometheus.Gatherer
	// History holds the chart samples (filled by Record).
	History *History
	// Every is History's sampling interval.
	Every    time.Duration
	Settings []config.Setting
	Version  string
	Started  time.Time
	// Refresh is the page's reload interval (DefaultRefresh when 0).
	Refresh time.Duration
}

// Page serves the status page.
type Page struct {
	o    Options
	tmpl *template.Template

	mu       sync.Mutex // serializes gathers; guards cached
	cached   Snapshot
	cachedAt time.Time
}

// New returns the page.
func New(o Options) (*Page, error) {
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	tmpl, err := template.ParseFS(assets, "assets/index.html")
	if err != nil {
		return nil, err
	}
	return &Page{o: o, tmpl: tmpl}, nil
}

// staticFiles are what /static/ serves: named one by one, because a file
// server over assets/ would also serve the template (as the index of
// /static/) and list the directory.
var staticFiles = []string{"page.css", "page.js"}

// Register mounts the page on mux: / (the page), /status.json (its
// figures) and /static/ (its stylesheet and script), GET only.
func (p *Page) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", p.serveHTML)
	mux.HandleFunc("GET /status.json", p.serveJSON)
	for _, name := range staticFiles {
		mux.HandleFunc("GET /static/"+name, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFileFS(w, r, assets, "assets/"+name)
		})
	}
}

// Snapshot is what /status.json returns and the page shows.
type Snapshot struct {
	Time      time.Time `json:"time"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	// Report is relay status --json's report; null when PostgreSQL could
	// not be read (Error says why).
	Report    *status.Report `json:"report"`
	Error     string         `json:"error,omitempty"`
	LastFlush *Flush         `json:"last_flush"`
	// Samples are the chart points, oldest first, SampleSeconds apart,
	// over the last WindowSeconds.
	Samples        []Sample         `json:"samples"`
	SampleSeconds  float64          `json:"sample_seconds"`
	WindowSeconds  float64          `json:"window_seconds"`
	Settings       []config.Setting `json:"settings"`
	RefreshSeconds float64          `json:"refresh_seconds"`
}

// Flush is the last batch ClickHouse accepted.
type Flush struct {
	Time   time.Time `json:"time"`
	Events int64     `json:"events"`
	Bytes  int64     `json:"bytes"`
}

// Snapshot gathers the figures, or returns those of a gather less than
// MinGatherInterval old.
func (p *Page) Snapshot(ctx context.Context) Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cachedAt.IsZero() && time.Since(p.cachedAt) < MinGatherInterval {
		return p.cached
	}
	s := Snapshot{Time: time.Now().UTC(), Version: p.o.Version, StartedAt: p.o.Started.UTC(),
		Settings: p.o.Settings, RefreshSeconds: p.o.Refresh.Seconds(), Samples: []Sample{}}
	gctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	if r, err := p.o.Gather(gctx); err != nil {
		s.Error = err.Error()
	} else {
		s.Report = r
	}
	if p.o.Metrics != nil {
		if c, err := ReadCounters(p.o.Metrics); err == nil && c.LastFlushUnix > 0 {
			s.LastFlush = &Flush{Time: time.Unix(0, int64(c.LastFlushUnix*1e9)).UTC(),
				Events: int64(c.LastFlushEvents), Bytes: int64(c.LastFlushBytes)}
		}
	}
	if p.o.History != nil {
		s.Samples = p.o.History.Samples()
		s.SampleSeconds = p.o.Every.Seconds()
		s.WindowSeconds = float64(len(p.o.History.ring)) * p.o.Every.Seconds()
	}
	p.cached, p.cachedAt = s, time.Now()
	return s
}

func (p *Page) serveJSON(w http.ResponseWriter, r *http.Request) {
	s := p.Snapshot(r.Context())
	headers(w, "application/json")
	_ = json.NewEncoder(w).Encode(s)
}

func (p *Page) serveHTML(w http.ResponseWriter, r *http.Request) {
	s := p.Snapshot(r.Context())
	headers(w, "text/html; charset=utf-8")
	_ = p.tmpl.Execute(w, s)
}

// headers: never cached, nothing from elsewhere, not framed.
func headers(w http.ResponseWriter, contentType string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}
