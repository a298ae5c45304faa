package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// BuildRelay builds ./cmd/relay into dir and returns the binary's path.
func BuildRelay(dir string, tags ...string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "relay")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", tags[0])
	}
	cmd := exec.CommandContext(context.Background(), "go", append(args, "./cmd/relay")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.Join(err, errors.New(string(out)))
	}
	return bin, nil
}

// Process is a relay (or other) process started by a test.
type Process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

type lockedWriter struct{ p *Process }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start runs bin with exactly env and args; t.Cleanup kills it if the test
// did not stop it.
func Start(t TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{cmd: exec.CommandContext(context.Background(), bin, args...), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout = lockedWriter{p}
	p.cmd.Stderr = lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", filepath.Base(bin), args, p.Output())
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Wait waits up to timeout for the exit and returns the exit code (-1 when
// it did not exit in time or died from a signal).
func (p *Process) Wait(timeout time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return -1
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output is everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}
