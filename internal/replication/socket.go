package replication

import (
	"bufio"
	"context"
	"net"
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
	drained  atomic.Bool  // the last network read returned less than it asked for
	// raw is the TCP socket under conn (and TLS) for its options; nil
	// when conn is not one (a Unix socket does not need them).
	raw syscall.RawConn
}

func newSocket(c net.Conn) *socket {
	s := &socket{Conn: c}
	s.r = bufio.NewReaderSize(networkReader{s}, socketBufferSize)
	under := c
	if t, ok := under.(interface{ NetConn() net.Conn }); ok { // TLS
		under = t.NetConn()
	}
	if tcp, ok := under.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	return s
}

// quietBytes is the low-water mark of a waiting stream's socket: while
// the stream waits ReceiveWait, data below it does not wake the process.
const quietBytes = 64 << 10

// quiet sets the socket's receive low-water mark (SO_RCVLOWAT): on, the
// kernel wakes the process only once quietBytes are queued; off, at the
// first byte. The wait between reads is a timer, but without it every
// packet the walsender sends (one per transaction and more) still woke the
// Go runtime's network poller, which found no reader waiting and went back
// to sleep: at 2,000 one-event transactions a second that idle wake-up was
// most of the relay's CPU. Reads are made with it off, so a read that
// waits for the network wakes at the first byte.
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
	n, err := r.s.Conn.Read(p)
	r.s.drained.Store(err == nil && n < len(p))
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

// caughtUp reports whether every byte received is handled: the next
// receive waits for the network. drained says the last network read also
// emptied the kernel's queue, so nothing more was waiting then.
func (st *stream) caughtUp() (caughtUp, drained bool) {
	if st.sock == nil || st.conn.Frontend().ReadBufferLen() > 0 || st.sock.buffered.Load() > 0 {
		return false, false
	}
	return true, st.sock.drained.Load()
}

// gather runs before each receive. When the stream has caught up it hands
// the queued items over (the consumer gets whole transactions as soon as
// nothing more is at hand), and when the last read found the queue empty it
// waits ReceiveWait before reading again, so that the next transactions'
// messages arrive in one read: at a steady trickle of small transactions
// the relay wakes once per ReceiveWait instead of once per message (three
// per one-event transaction). A catching-up stream never waits: its reads
// fill the buffer.
func (st *stream) gather(ctx context.Context) error {
	caughtUp, drained := st.caughtUp()
	if !caughtUp {
		return nil
	}
	if err := st.send(st.emitCtx, st, st.out); err != nil {
		return err
	}
	if !drained || st.cfg.ReceiveWait <= 0 {
		return nil
	}
	// Only after a read that found data: an idle stream's reads end at
	// their deadline with nothing, and are not followed by a wait.
	st.sock.drained.Store(false)
	if st.wait == nil {
		st.wait = time.NewTimer(st.cfg.ReceiveWait)
	} else {
		st.wait.Reset(st.cfg.ReceiveWait)
	}
	st.sock.quiet(true)
	defer st.sock.quiet(false)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-st.wait.C:
		return nil
	}
}
