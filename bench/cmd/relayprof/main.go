// Command relayprof is bin/relay with a CPU profile: it runs the relay's
// command line unchanged and, when BENCH_CPUPROFILE names a file, profiles
// the whole process into it, and writes the allocation profile of the
// whole run beside it (<name>.allocs.pprof: go tool pprof -sample_index=alloc_space). The relay has no pprof endpoint; relaybench
// uses this binary (-relay bin/relayprof -cpuprofile-dir DIR) to see where
// a drain spends its CPU.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/outbox-relay/relay/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile(os.Getenv("BENCH_CPUPROFILE"))
	code := cli.Main(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		writeAllocs(strings.TrimSuffix(path, ".pprof") + ".allocs.pprof")
	}
}

// writeAllocs writes every allocation since the start (the "allocs"
// profile; the runtime samples one per 512 KiB allocated).
func writeAllocs(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		return
	}
	defer func() { _ = f.Close() }()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
	}
}
