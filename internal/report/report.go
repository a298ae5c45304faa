// Package report sends errors to Sentry when a DSN is configured; without
// one every call is a no-op.
package report

import (
	"context"
	"time"

	"github.com/getsentry/sentry-go"
)

// Options configure the Sentry client.
type Options struct {
	DSN         string
	Environment string
	Release     string
	SampleRate  float64 // share of traced flushes
	// Transport replaces the HTTP transport (tests capture events in memory).
	Transport sentry.Transport
}

// Reporter wraps a Sentry hub (nil hub: disabled).
type Reporter struct {
	hub *sentry.Hub
}

// New builds a Reporter; an empty DSN disables it.
func New(o Options) (*Reporter, error) {
	if o.DSN == "" {
		return &Reporter{}, nil
	}
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:              o.DSN,
		Environment:      o.Environment,
		Release:          o.Release,
		EnableTracing:    o.SampleRate > 0,
		TracesSampleRate: o.SampleRate,
		Transport:        o.Transport,
	})
	if err != nil {
		return nil, err
	}
	return &Reporter{hub: sentry.NewHub(client, sentry.NewScope())}, nil
}

// Enabled reports whether errors go anywhere.
func (r *Reporter) Enabled() bool { return r != nil && r.hub != nil }

// Hub is the Sentry hub, nil when disabled.
func (r *Reporter) Hub() *sentry.Hub {
	if r == nil {
		return nil
	}
	return r.hub
}

// Error captures err with tags (slot, LSN, batch size, server version...).
func (r *Reporter) Error(err error, tags map[string]string) {
	if !r.Enabled() || err == nil {
		return
	}
	r.hub.WithScope(func(s *sentry.Scope) {
		s.SetTags(tags)
		r.hub.CaptureException(err)
	})
}

// Message captures a notable condition that is not an error return (e.g. a
// lost slot being recovered).
func (r *Reporter) Message(msg string, level sentry.Level, tags map[string]string) {
	if !r.Enabled() {
		return
	}
	r.hub.WithScope(func(s *sentry.Scope) {
		s.SetTags(tags)
		s.SetLevel(level)
		r.hub.CaptureMessage(msg)
	})
}

// Flush waits up to timeout for queued events to be sent.
func (r *Reporter) Flush(timeout time.Duration) {
	if r.Enabled() {
		r.hub.Flush(timeout)
	}
}

// StartSpan starts a performance span named op: a child of the span in ctx,
// or a new transaction when there is none (one per flush). It returns the
// context carrying the span and the function that finishes it; both are
// no-ops when Sentry is disabled. Sampling follows SampleRate.
func (r *Reporter) StartSpan(ctx context.Context, op string, tags map[string]string) (context.Context, func()) {
	if !r.Enabled() {
		return ctx, func() {}
	}
	var span *sentry.Span
	if parent := sentry.SpanFromContext(ctx); parent != nil {
		span = parent.StartChild(op)
	} else {
		ctx = sentry.SetHubOnContext(ctx, r.hub)
		span = sentry.StartTransaction(ctx, op, sentry.WithOpName(op))
	}
	for k, v := range tags {
		span.SetTag(k, v)
	}
	return span.Context(), span.Finish
}
