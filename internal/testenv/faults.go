package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// FaultProxy forwards TCP connections to a target and injects the network
// faults of the fault-injection tests:
//
//   - Down/Up: every connection is closed at once and new ones are refused,
//     as when the server restarts.
//   - Pause/Resume: nothing is forwarded in either direction, but no socket
//     is closed either (a black hole); bytes and closes held during the pause
//     are delivered on Resume.
//   - Sever: the connections open now go silent for good (their server side
//     is closed, their client side stays open and never answers), as when a
//     firewall or NAT forgets a connection; new connections work normally.
//   - HoldResponsesAfter: once n more bytes went to the server, nothing the
//     server sends is forwarded until Resume (a request the server received
//     and answered, whose answer is lost in flight).
type FaultProxy struct {
	ln     net.Listener
	target string
	closed chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	down    bool
	gate    chan struct{} // closed while forwarding
	replies chan struct{} // closed while forwarding server to client
	// holdAfter counts down the bytes to the server until replies close.
	holdAfter int
	links     map[*faultLink]struct{}
}

// faultLink is one proxied connection.
type faultLink struct {
	client, server net.Conn
	severed        chan struct{} // closed by Sever
	sever          sync.Once
}

// NewFaultProxy listens on a free loopback port and forwards to target;
// t.Cleanup closes it and every connection.
func NewFaultProxy(t TB, target string) *FaultProxy {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy listen: %v", err)
	}
	p := &FaultProxy{ln: ln, target: target, closed: make(chan struct{}), gate: make(chan struct{}),
		replies: make(chan struct{}), links: map[*faultLink]struct{}{}}
	close(p.gate)
	close(p.replies)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// Down closes every connection and refuses new ones until Up.
func (p *FaultProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for l := range p.links {
		_ = l.client.Close()
		_ = l.server.Close()
	}
}

// Up accepts connections again.
func (p *FaultProxy) Up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// Pause stops forwarding on every connection, open or new, without closing
// any.
func (p *FaultProxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already paused
	}
}

// Resume forwards again, first what was held (responses too).
func (p *FaultProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdAfter = 0
	for _, g := range []chan struct{}{p.gate, p.replies} {
		select {
		case <-g:
		default:
			close(g)
		}
	}
}

// HoldResponsesAfter stops forwarding what the server sends once n more
// bytes were forwarded to it, until Resume.
func (p *FaultProxy) HoldResponsesAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdAfter = n
}

// ResponsesHeld reports whether HoldResponsesAfter's hold has begun.
func (p *FaultProxy) ResponsesHeld() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.replies:
		return false
	default:
		return true
	}
}

// sent counts n bytes forwarded to the server against HoldResponsesAfter.
func (p *FaultProxy) sent(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holdAfter <= 0 {
		return
	}
	if p.holdAfter -= n; p.holdAfter <= 0 {
		p.replies = make(chan struct{})
	}
}

// Sever makes the connections open now silent forever and returns how many
// there were: their server side is closed, what their client sends is
// dropped, and the client never sees a byte or a close again.
func (p *FaultProxy) Sever() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.sever.Do(func() { close(l.severed) })
		_ = l.server.Close()
	}
	return len(p.links)
}

// Conns is the number of connections currently proxied.
func (p *FaultProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		up, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &faultLink{client: c, server: up, severed: make(chan struct{})}
		p.mu.Lock()
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, up, c)
		go p.pipe(l, c, up)
	}
}

// pipe copies src to dst, holding each chunk (and the final close) while
// the proxy is paused and dropping everything once the link is severed.
func (p *FaultProxy) pipe(l *faultLink, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		forward := p.wait(l, src == l.server)
		if !forward {
			if err != nil {
				// Severed (or the proxy closed): the client side stays open
				// and silent until the client closes it or the test ends.
				if src == l.client {
					_ = l.client.Close()
				}
				p.forget(l, src == l.client)
				return
			}
			continue // severed: drop the bytes
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			} else if dst == l.server {
				p.sent(n)
			}
		}
		if err != nil {
			_ = dst.Close()
			_ = src.Close()
			p.forget(l, true)
			return
		}
	}
}

// wait blocks while the proxy is paused (or, for a reply from the server,
// while responses are held); it reports false when the link is severed or
// the proxy closed.
func (p *FaultProxy) wait(l *faultLink, reply bool) bool {
	p.mu.Lock()
	gate, replies := p.gate, p.replies
	p.mu.Unlock()
	if !p.through(l, gate) {
		return false
	}
	return !reply || p.through(l, replies)
}

// through waits for gate to be open, unless l is severed or the proxy
// closed first (then false).
func (p *FaultProxy) through(l *faultLink, gate chan struct{}) bool {
	select {
	case <-l.severed:
		return false
	case <-p.closed:
		return false
	default:
	}
	select {
	case <-gate:
		select {
		case <-l.severed:
			return false
		default:
			return true
		}
	case <-l.severed:
		return false
	case <-p.closed:
		return false
	}
}

// forget drops l from the open links once its client side is done.
func (p *FaultProxy) forget(l *faultLink, clientDone bool) {
	if !clientDone {
		return
	}
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

func (p *FaultProxy) close() {
	_ = p.ln.Close()
	close(p.closed)
	p.mu.Lock()
	for l := range p.links {
		_ = l.client.Close()
		_ = l.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// LocalTCPPorts lists the local ports of the TCP sockets process pid holds
// open (from /proc/<pid>/fd and /proc/net/tcp{,6}), e.g. to tell which of
// several processes a server-side connection belongs to.
func LocalTCPPorts(pid int) (map[int]bool, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	ports := map[int]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := socketPorts(table, inodes, ports); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return ports, nil
}

// socketPorts adds the local port of every socket in table whose inode is
// in inodes.
func socketPorts(table string, inodes map[string]bool, ports map[int]bool) error {
	f, err := os.Open(table)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || !inodes[fields[9]] {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseInt(hexPort, 16, 32)
		if err != nil {
			return fmt.Errorf("parse %s port %q: %w", table, hexPort, err)
		}
		ports[int(port)] = true
	}
	return sc.Err()
}
