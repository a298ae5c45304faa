package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outbox-relay/relay/internal/procfs"
)

// Proc is a child process under measurement (the relay or a baseline).
// Its output goes to a log file so that a failure can be diagnosed.
type Proc struct {
	Name    string
	LogPath string
	Started time.Time

	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
	hwm  atomic.Int64
}

// Usage is what a finished child used.
type Usage struct {
	CPU     time.Duration // user + system
	PeakRSS int64         // bytes
	Exit    int
}

// StartProc starts bin with exactly env; stdout and stderr go to logPath.
// The child is killed if ctx ends first (the driver was interrupted).
func StartProc(ctx context.Context, name, logPath, bin string, env []string, args ...string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: exec.CommandContext(ctx, bin, args...), log: f, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	go p.sampleRSS()
	return p, nil
}

// sampleRSS reads the child's VmHWM every 100 ms until it exits (VmHWM only
// grows, so the last reading is the peak but for the final 100 ms).
func (p *Proc) sampleRSS() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.SampleRSS()
		}
	}
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the child has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// SampleRSS records the child's VmHWM while it is alive.
func (p *Proc) SampleRSS() {
	if v, err := procfs.PeakRSS(p.Pid()); err == nil && v > p.hwm.Load() {
		p.hwm.Store(v)
	}
}

// Stop sends SIGTERM and waits up to timeout for the exit (then SIGKILL).
func (p *Proc) Stop(timeout time.Duration) (Usage, error) {
	p.SampleRSS()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return p.usage(), fmt.Errorf("%s did not stop within %s (killed); log: %s", p.Name, timeout, p.LogPath)
	}
	return p.usage(), p.exitErr()
}

// Wait waits up to timeout for the child to exit by itself.
func (p *Proc) Wait(timeout time.Duration) (Usage, error) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return p.usage(), fmt.Errorf("%s did not finish within %s (killed); log: %s", p.Name, timeout, p.LogPath)
	}
	return p.usage(), p.exitErr()
}

// Kill ends the child at once (cleanup after a failed run).
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *Proc) usage() Usage {
	// Not ru_maxrss: after a fork+exec it also holds the parent's peak (the
	// kernel keeps the pre-exec mm's high-water mark), so VmHWM it is.
	u := Usage{PeakRSS: p.hwm.Load(), Exit: -1}
	if st := p.cmd.ProcessState; st != nil {
		u.Exit = st.ExitCode()
		u.CPU = st.UserTime() + st.SystemTime()
	}
	return u
}

func (p *Proc) exitErr() error {
	if p.err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w; last output:\n%s", p.Name, p.err, p.Tail(20))
}

// Tail returns the last n lines of the child's log.
func (p *Proc) Tail(n int) string {
	raw, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// errExited is returned when a child ended while it should be working.
var errExited = errors.New("process exited early")
