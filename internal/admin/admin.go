// Package admin is the relay's operations HTTP endpoint:
//
//	/healthz        200 while the process serves HTTP (liveness)
//	/readyz         200 while the State says ready, else 503; the body says why
//	/metrics        the Prometheus registry of package metrics
//	/debug/pprof/   the Go profiler, only when enabled (--pprof, RELAY_PPROF)
//	/               the status page, when Options.Page is set (package statuspage)
//
// Readiness is the relay's: connected to the slot, alive and not stuck
// (see Readiness). It is fed by the replication stream's hooks and by the
// slot poller (status.PollSlot); admin itself opens no connection.
package admin

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/outbox-relay/relay/internal/config"
)

// State answers readiness at a given time, with a reason either way.
type State interface {
	Ready(now time.Time) (bool, string)
}

// Options configure the handler.
type Options struct {
	// Pprof mounts net/http/pprof under /debug/pprof/.
	Pprof bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Page, when set, mounts the status page's paths (/, …).
	Page interface{ Register(mux *http.ServeMux) }
	// Cmdline is what /debug/pprof/cmdline shows instead of os.Args, with
	// the passwords of URLs given as flags redacted (config.RedactArgs).
	Cmdline []string
}

// New returns the admin handler: readiness from state, metrics served by
// metrics.
func New(state State, metrics http.Handler, opts Options) http.Handler {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := state.Ready(now()); ok {
			text(w, http.StatusOK, "ready: "+why)
		} else {
			text(w, http.StatusServiceUnavailable, "not ready: "+why)
		}
	})
	mux.Handle("GET /metrics", metrics)
	if opts.Page != nil {
		opts.Page.Register(mux)
	}
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
			// pprof.Cmdline would show os.Args, passwords in flags included.
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = fmt.Fprint(w, strings.Join(opts.Cmdline, "\x00"))
		})
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, body)
}

// pprofFlag and pprofEnv name the switch of /debug/pprof/.
const (
	pprofFlag = "pprof"
	pprofEnv  = "RELAY_PPROF"
)

// RegisterFlags adds --pprof to fs, bound to o.Pprof.
func RegisterFlags(fs *pflag.FlagSet, o *Options) {
	fs.BoolVar(&o.Pprof, pprofFlag, false, "serve the Go profiler under /debug/pprof/ on the admin address (env "+pprofEnv+")")
}

// Load takes RELAY_PPROF from environ unless --pprof was given; a value
// that is not a boolean is a *config.Error.
func (o *Options) Load(fs *pflag.FlagSet, environ map[string]string) error {
	if fl := fs.Lookup(pprofFlag); fl != nil && fl.Changed {
		return nil
	}
	v, ok := environ[pprofEnv]
	if !ok || v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return &config.Error{Problems: []error{fmt.Errorf("%s %q: use true or false", pprofEnv, v)}}
	}
	o.Pprof = b
	return nil
}
