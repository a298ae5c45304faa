package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/google/uuid"
)

// requestIDHeader carries the request id both ways.
const requestIDHeader = "X-Request-Id"

// requestInfo is the per-request state the middleware share. Handlers run on
// the request's goroutine, so it needs no lock.
type requestInfo struct {
	id       string
	err      error // why the response is a 5xx, if a handler knows
	silent   bool  // a 5xx that is expected and must not reach Sentry
	panicked bool  // reported even when the status was sent before the panic
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

func requestIDFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

func recordError(ctx context.Context, err error) {
	if info := infoFrom(ctx); info != nil {
		info.err = err
	}
}

func markSilent(ctx context.Context) {
	if info := infoFrom(ctx); info != nil {
		info.silent = true
	}
}

// withRequestID honors a sane incoming X-Request-Id or makes one, echoes it,
// and starts the request's requestInfo.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set(requestIDHeader, id)
		ctx := context.WithValue(r.Context(), requestInfoKey{}, &requestInfo{id: id})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// validRequestID accepts up to 128 visible ASCII characters, so a client's id
// can neither forge log lines nor bloat them.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// statusRecorder remembers the status and counts the body bytes written.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// observe writes the access log line (never a body) and reports 5xx to
// Sentry on a hub cloned for this request and tagged with its id.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := infoFrom(r.Context())
		hub := s.hub.Clone()
		hub.Scope().SetTag("request_id", info.id)
		hub.Scope().SetTag("http.method", r.Method)
		hub.Scope().SetTag("http.path", r.URL.Path)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(sentry.SetHubOnContext(r.Context(), hub)))
		if rec.status == 0 { // handler wrote nothing: net/http sends 200
			rec.status = http.StatusOK
		}
		if (rec.status >= 500 && !info.silent) || info.panicked {
			hub.CaptureException(reportedError(r, rec.status, info.err))
		}
		s.logAccess(r, info, rec, time.Since(start))
	})
}

func reportedError(r *http.Request, status int, err error) error {
	if err == nil {
		err = errors.New(http.StatusText(status))
	}
	return fmt.Errorf("%s %s: %d: %w", r.Method, r.URL.Path, status, err)
}

func (s *Server) logAccess(r *http.Request, info *requestInfo, rec *statusRecorder, d time.Duration) {
	ev := s.log.Info()
	if rec.status >= 500 {
		ev = s.log.Error().Err(info.err)
	}
	ev.Str("request_id", info.id).
		Str("method", r.Method).
		Str("path", r.URL.Path).
		Int("status", rec.status).
		Dur("duration", d).
		Int64("bytes", rec.bytes).
		Msg("http request")
}

// recoverPanics turns a handler panic into a 500 problem. http.ErrAbortHandler
// is re-raised: it is net/http's way to abort a response on purpose.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, _ := w.(*statusRecorder)
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(p)
			}
			err := fmt.Errorf("panic: %v", p)
			if info := infoFrom(r.Context()); info != nil {
				info.panicked = true
			}
			s.log.Error().Str("request_id", requestIDFrom(r.Context())).Str("stack", string(debug.Stack())).Err(err).Msg("handler panicked")
			if rec != nil && rec.status != 0 { // headers already sent: nothing else to say
				recordError(r.Context(), err)
				return
			}
			serverError(w, r, err)
		}()
		next.ServeHTTP(w, r)
	})
}
