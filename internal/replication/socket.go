package replication

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// socketBufferSize is the replication connection's read buffer: a catching-up
// stream takes this much of the kernel's queue per read system call, instead
// of pgproto3's 8 KiB.
const socketBufferSize = 256 << 10

// socket is the replication connection as pgconn reads it: a large read
// buffer over the network connection (after TLS), which also tells the
// stream whether the next receive would wait for the network and whether
// the last read emptied the kernel's queue.
//
// Reads are made by pgconn, normally on the stream's goroutine, but pgconn
// may read from another goroutine while a write blocks; the stream only
// looks at the counters, kept atomic for that case.
type socket struct {
	net.Conn
	r        *bufio.Reader
	buffered atomic.Int64 // bytes in r after the last Read
	drained  atomic.Bool  // the last network read emptied the kernel's queue (and TLS's)
	// tcp is the TCP connection under conn (and TLS), raw its socket for
	// options and waits; nil when conn is not one (a Unix socket does
	// not need them).
	tcp *net.TCPConn
	raw syscall.RawConn
	// isTLS: conn is TLS over tcp, whose reads return one record each.
	isTLS bool
	// deadline is the read deadline last set through the socket: the
	// socket's own waits and probes move tcp's and put it back.
	mu       sync.Mutex
	deadline time.Time
}

func newSocket(c net.Conn) *socket {
	s := &socket{Conn: c}
	s.r = bufio.NewReaderSize(networkReader{s}, socketBufferSize)
	under := c
	if t, ok := under.(interface{ NetConn() net.Conn }); ok { // TLS
		under, s.isTLS = t.NetConn(), true
	}
	if tcp, ok := under.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			s.tcp, s.raw = tcp, raw
		}
	}
	return s
}

// quietBytes is the low-water mark of a waiting stream's socket: while
// the stream waits, data below it does not wake the process.
const quietBytes = 64 << 10

// quiet sets the socket's receive low-water mark (SO_RCVLOWAT): on, the
// kernel wakes the process only once quietBytes are queued; off, at the
// first byte. Without it every packet the walsender sends during a wait
// (one per transaction and more) woke the process: at 2,000 one-event
// transactions a second that wake-up was most of the relay's CPU. With it
// the wait (see await) ends only when quietBytes are queued or its
// deadline passes. Reads are made with it off, so a read that waits for
// the network wakes at the first byte.
func (s *socket) quiet(on bool) {
	if s.raw == nil {
		return
	}
	n := 1
	if on {
		n = quietBytes
	}
	_ = s.raw.Control(func(fd uintptr) { setLowWater(fd, n) })
}

// SetDeadline and SetReadDeadline note the read deadline (see deadline).
func (s *socket) SetDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	return s.Conn.SetDeadline(t)
}

func (s *socket) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	return s.Conn.SetReadDeadline(t)
}

// restoreDeadline puts back the read deadline set through the socket.
func (s *socket) restoreDeadline() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.tcp.SetReadDeadline(s.deadline)
}

// past is a read deadline that has passed: a read under it returns what
// is buffered above the kernel, or fails at once.
var past = time.Unix(1, 0)

// await waits until until, or until the kernel would wake a reader of the
// quiet socket: quietBytes are queued, or its buffer or receive window is
// nearly full (the sender must not stall on a long wait). It reports false
// when it cannot wait on this socket (not TCP, or not Linux): the caller
// keeps time itself.
func (s *socket) await(ctx context.Context, until time.Time) (bool, error) {
	if s.tcp == nil || !canAwait {
		return false, nil
	}
	s.quiet(true)
	defer s.quiet(false)
	_ = s.tcp.SetReadDeadline(until)
	stop := context.AfterFunc(ctx, func() { _ = s.tcp.SetReadDeadline(past) })
	// The poll checks what the kernel says now: a readiness noted by the
	// runtime before the mark was raised does not end the wait.
	// Its error is the deadline, the wait's normal end, or one that the
	// read that follows returns too.
	_ = s.raw.Read(func(fd uintptr) bool { return readable(fd) })
	if !stop() || ctx.Err() != nil {
		return true, ctx.Err()
	}
	s.restoreDeadline()
	return true, nil
}

// takeRecords reads into p the TLS records already received, without
// waiting for the network: under a past deadline a TLS read returns a
// record it holds whole and fails at once (a timeout, which leaves TLS
// usable) when it would need the network. A walsender sends each message
// as its own record, and a TLS read returns one record: without this a
// read would bring one message, not what has arrived.
func (s *socket) takeRecords(p []byte) int {
	_ = s.tcp.SetReadDeadline(past)
	defer s.restoreDeadline()
	n := 0
	for n < len(p) {
		m, err := s.Conn.Read(p[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	return n
}

// kernelEmpty reports whether nothing is queued on the socket; false when
// it cannot tell.
func (s *socket) kernelEmpty() bool {
	empty := false
	_ = s.raw.Control(func(fd uintptr) { empty = queued(fd) == 0 })
	return empty
}

func (s *socket) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.buffered.Store(int64(s.r.Buffered()))
	return n, err
}

// networkReader reads the network connection and notes whether the read
// emptied the kernel's queue: a TCP read returns what is queued, up to the
// space given.
type networkReader struct{ s *socket }

func (r networkReader) Read(p []byte) (int, error) {
	s := r.s
	n, err := s.Conn.Read(p)
	drained := err == nil && n < len(p)
	if drained && s.isTLS && s.tcp != nil {
		// The records TLS holds are taken too; the read emptied the
		// kernel's queue only if nothing is left there.
		n += s.takeRecords(p[n:])
		drained = n < len(p) && s.kernelEmpty()
	}
	s.drained.Store(drained)
	return n, err
}

// wrapSocket makes cfg's connections sockets (after TLS, so that what is
// buffered is plain protocol bytes).
func wrapSocket(cfg *pgconn.Config) {
	next := cfg.AfterNetConnect
	cfg.AfterNetConnect = func(ctx context.Context, c *pgconn.Config, conn net.Conn) (net.Conn, error) {
		if next != nil {
			var err error
			if conn, err = next(ctx, c, conn); err != nil {
				return nil, err
			}
		}
		return newSocket(conn), nil
	}
}
