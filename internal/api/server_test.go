package api

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/outbox"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, reason string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", reason)
		}
		runtime.Gosched()
	}
}

// An in-flight request finishes after Serve's context is canceled; new
// connections are refused; Serve then returns nil.
func TestServeDrainsInFlightRequestsOnShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	db := &fakeDB{queryRow: func(context.Context, string, ...any) pgx.Row {
		close(entered)
		<-release
		return rowFunc(func(dest ...any) error {
			*dest[0].(*uuid.UUID) = uuid.MustParse("5b1f3c9e-2f4a-4c61-9c53-0a9c1f0d2b7e")
			*dest[1].(*string) = "a@b.cd"
			*dest[2].(*string), *dest[3].(*string) = "A", "B"
			*dest[4].(*time.Time) = time.Unix(0, 0)
			return nil
		})
	}}
	f := newFixture(t, db, nil)
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln) }()

	status := make(chan int, 1)
	go func() {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/users/5b1f3c9e-2f4a-4c61-9c53-0a9c1f0d2b7e", nil)
		if err != nil {
			status <- -1
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- -1
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	<-entered
	cancel()
	waitFor(t, "listener to close", func() bool {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)

	if got := <-status; got != http.StatusOK {
		t.Errorf("in-flight request status = %d, want 200", got)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after graceful shutdown", err)
	}
}

func TestRunReportsListenError(t *testing.T) {
	pub, err := outbox.NewPublisher("test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Addr: "127.0.0.1:-1"}, &fakeDB{}, pub, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(context.Background()); err == nil || srv.Config().Addr != "127.0.0.1:-1" {
		t.Fatalf("Run = %v, want listen error", err)
	}
}
