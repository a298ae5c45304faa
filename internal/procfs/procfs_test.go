package procfs

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestPeakRSS(t *testing.T) {
	n, err := PeakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n < 1<<20 || n > 64<<30 {
		t.Errorf("PeakRSS of this test = %d bytes, want a plausible size", n)
	}
	if _, err := PeakRSS(-1); err == nil {
		t.Error("PeakRSS(-1) = nil error, want one")
	}
}

func TestCPU(t *testing.T) {
	// This goroutine's thread: /proc/<tid> reads one thread's accounting.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := syscall.Gettid()
	before, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the reading moves: a process's CPU time only grows.
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, err := CPU(pid)
		if err != nil {
			t.Fatal(err)
		}
		if after < before {
			t.Fatalf("CPU went back from %v to %v", before, after)
		}
		if after > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU stayed at %v for 10 s of spinning", before)
		}
	}
	if _, err := CPU(-1); err == nil {
		t.Error("CPU(-1) = nil error, want one")
	}
}
