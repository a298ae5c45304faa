package api

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/getsentry/sentry-go"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/outbox"
)

// Server is the HTTP API. Build it with [New]; serve it with [Server.Run],
// or mount [Server.Handler] yourself.
type Server struct {
	cfg     Config
	store   *store
	log     zerolog.Logger
	hub     *sentry.Hub
	handler http.Handler
}

// Option customizes a [Server].
type Option func(*Server)

// WithSentryHub sets the hub cloned for each request (default
// sentry.CurrentHub(), which does nothing until sentry.Init is given a DSN).
func WithSentryHub(hub *sentry.Hub) Option {
	return func(s *Server) { s.hub = hub }
}

// withStepHook injects failures into the create-user transaction. Tests only.
func withStepHook(h stepHook) Option {
	return func(s *Server) { s.store.hook = h }
}

// New builds a Server. Zero Config fields take their defaults; db is usually
// a *pgxpool.Pool, and pub writes user_created to the outbox.
func New(cfg Config, db DB, pub *outbox.Publisher, logger zerolog.Logger, opts ...Option) (*Server, error) {
	cfg = cfg.withDefaults()
	errs := []error{cfg.Validate()}
	if db == nil {
		errs = append(errs, errors.New("db is nil"))
	}
	if pub == nil {
		errs = append(errs, errors.New("publisher is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("api: new server: %w", err)
	}
	s := &Server{
		cfg:   cfg,
		store: &store{db: db, pub: pub, timeout: cfg.DBTimeout},
		log:   logger,
		hub:   sentry.CurrentHub(),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.handler = withRequestID(s.observe(s.recoverPanics(s.routes())))
	return s, nil
}

// Config returns the effective configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Handler is the complete API with all middleware.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /users", s.createUser)
	mux.HandleFunc("GET /users/{id}", s.getUser)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return problemFallback(mux)
}

// problemFallback sends the mux's own 404 and 405 answers as problem+json,
// keeping the Allow header of a 405.
func problemFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerProbe{header: http.Header{}}
		mux.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeProblem(w, r, newProblem(probe.status, ""))
	})
}

// headerProbe captures what the mux's fallback handler would send.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(code int)        { p.status = code }

// Run listens on Config.Addr and serves until ctx ends, then shuts down
// gracefully within Config.ShutdownTimeout. It returns nil after a clean
// shutdown.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened; it closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          log.New(s.log.With().Str("component", "http").Logger(), "", 0),
		// Requests must outlive ctx during the drain, so they get its values
		// but not its cancellation.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.log.Info().Str("addr", ln.Addr().String()).Msg("api listening")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	return s.shutdown(ctx, srv, served)
}

func (s *Server) shutdown(ctx context.Context, srv *http.Server, served <-chan error) error {
	s.log.Info().Dur("timeout", s.cfg.ShutdownTimeout).Msg("api shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("api: shutdown: %w", err), srv.Close())
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("api: serve: %w", err))
	}
	return errors.Join(errs...)
}
