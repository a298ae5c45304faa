package integration

import (
	"context"
	"net"
	"sync"
	"testing"
)

// spineProxy forwards TCP connections to target. Paused, it stops forwarding
// bytes without closing anything: to the client the server looks stalled,
// not down. It can also hold only the responses (server to client), which
// lets a request reach the server while its answer is delayed.
type spineProxy struct {
	ln     net.Listener
	target string

	mu sync.Mutex
	// up (client to server) and down (server to client) are closed while
	// that direction forwards.
	up, down chan struct{}
	// holdAfter > 0: hold the responses once that many more request bytes
	// have been forwarded.
	holdAfter int
	conns     []net.Conn
	wg        sync.WaitGroup
}

func startSpineProxy(t *testing.T, target string) *spineProxy {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &spineProxy{ln: ln, target: target, up: make(chan struct{}), down: make(chan struct{})}
	close(p.up)
	close(p.down)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *spineProxy) Addr() string { return p.ln.Addr().String() }

func isOpen(gate chan struct{}) bool {
	select {
	case <-gate:
		return true
	default:
		return false
	}
}

// Pause stops forwarding in both directions.
func (p *spineProxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if isOpen(p.up) {
		p.up = make(chan struct{})
	}
	if isOpen(p.down) {
		p.down = make(chan struct{})
	}
}

// HoldResponsesAfter holds the server's bytes once n more client bytes have
// been forwarded (e.g. once a large INSERT's data went through).
func (p *spineProxy) HoldResponsesAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdAfter = n
}

// ResponsesHeld reports whether the server-to-client direction is held.
func (p *spineProxy) ResponsesHeld() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !isOpen(p.down)
}

// Resume forwards both directions again and disarms HoldResponsesAfter.
func (p *spineProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdAfter = 0
	if !isOpen(p.up) {
		close(p.up)
	}
	if !isOpen(p.down) {
		close(p.down)
	}
}

func (p *spineProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(out, in, true)
		go p.pipe(in, out, false)
	}
}

// pipe copies src to dst chunk by chunk, waiting at its direction's gate.
func (p *spineProxy) pipe(dst, src net.Conn, up bool) {
	defer p.wg.Done()
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.down
			if up {
				gate = p.up
			}
			p.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if up {
				p.forwardedUp(n)
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *spineProxy) forwardedUp(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holdAfter <= 0 {
		return
	}
	p.holdAfter -= n
	if p.holdAfter <= 0 && isOpen(p.down) {
		p.down = make(chan struct{})
	}
}

func (p *spineProxy) close() {
	_ = p.ln.Close()
	p.Resume()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
