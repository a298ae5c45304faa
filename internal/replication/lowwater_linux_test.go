package replication

import (
	"context"
	"net"
	"syscall"
	"testing"
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
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var d net.Dialer
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	s := newSocket(c)
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
