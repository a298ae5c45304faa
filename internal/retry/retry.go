// Package retry runs an operation again with capped exponential backoff and
// jitter until it succeeds, fails permanently or the context ends.
//
// Errors are classified once, at the edge of each dependency (see the
// errors.go files of the source and sink packages): those marked with
// Permanent are never retried.
package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying. A nil err stays nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return permanent{err}
}

// IsPermanent reports whether err, or any error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Backoff is a capped exponential backoff with full jitter.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	attempt int
}

// Next returns the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	d := b.Initial << min(b.attempt, 20)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	b.attempt++
	// Full jitter in [d/2, d): spreads reconnecting relays apart.
	return d/2 + rand.N(d/2+1)
}

// Reset starts the sequence over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Do calls op until it returns nil or a permanent error, or ctx ends.
// onRetry, when set, sees each retryable error and the wait before the next
// attempt (for logging and metrics).
func Do(ctx context.Context, b Backoff, op func(context.Context) error, onRetry func(err error, wait time.Duration)) error {
	for {
		err := op(ctx)
		if err == nil || IsPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		wait := b.Next()
		if onRetry != nil {
			onRetry(err, wait)
		}
		if serr := Sleep(ctx, wait); serr != nil {
			return errors.Join(serr, err)
		}
	}
}

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
