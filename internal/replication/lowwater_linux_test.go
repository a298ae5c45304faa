package replication

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

func lowWater(t *testing.T, s *socket) int {
	t.Helper()
	var n int
	var err error
	if cerr := s.raw.Control(func(fd uintptr) {
		n, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
	}); cerr != nil || err != nil {
		t.Fatalf("getsockopt SO_RCVLOWAT: %v %v", cerr, err)
	}
	return n
}

// A waiting stream's socket wakes the process only once quietBytes are
// queued; its reads wake at the first byte again.
func TestSocketQuietSetsTheLowWaterMark(t *testing.T) {
	s, _ := socketPair(t)
	if s.raw == nil {
		t.Fatal("newSocket found no TCP socket under a TCP connection")
	}
	s.quiet(true)
	if got := lowWater(t, s); got != quietBytes {
		t.Errorf("SO_RCVLOWAT while quiet = %d, want %d", got, quietBytes)
	}
	s.quiet(false)
	if got := lowWater(t, s); got != 1 {
		t.Errorf("SO_RCVLOWAT after = %d, want 1", got)
	}
}

// socketPair returns both ends of a loopback TCP connection, the reading
// one as a socket.
func socketPair(t *testing.T) (*socket, net.Conn) {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return newSocket(c), peer
}

// A quiet wait ends at its deadline while less than quietBytes is queued,
// at once when more is, and when ctx ends; the read deadline is put back.
func TestSocketAwait(t *testing.T) {
	s, peer := socketPair(t)
	// The deadline the stream set; each wait puts it back.
	if err := s.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	if _, err := peer.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ok, err := s.await(t.Context(), start.Add(50*time.Millisecond))
	if !ok || err != nil {
		t.Fatalf("await = %v, %v; want true, nil", ok, err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("with 1,000 bytes queued the wait ended after %v, before its deadline", took)
	}
	// The deadline was put back: a read of what is queued succeeds.
	if _, err := s.Conn.Read(make([]byte, 1000)); err != nil {
		t.Fatalf("read after the wait: %v", err)
	}

	if _, err := peer.Write(make([]byte, 2*quietBytes)); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if ok, err := s.await(t.Context(), start.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("await = %v, %v; want true, nil", ok, err)
	}
	if took := time.Since(start); took >= time.Minute {
		t.Errorf("with %d bytes queued the wait took %v", 2*quietBytes, took)
	}
	if got := lowWater(t, s); got != 1 {
		t.Errorf("SO_RCVLOWAT after the wait = %d, want 1", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	s2, _ := socketPair(t)
	go func() {
		_, err := s2.await(ctx, time.Now().Add(time.Hour))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("await after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("await did not end with its context")
	}
}
