package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outbox-relay/relay/bench"
)

// A -workdir that does not exist yet is created (the runs write their
// logs there) and kept afterwards.
func TestNewRunnerCreatesWorkDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	_, cleanup, err := newRunner(&options{workDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cleanup()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("workdir %s: %v", dir, err)
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		spec              string
		rate, step, batch int
		interval          time.Duration
		wantErr           bool
	}{
		{spec: "2000:1s", rate: 2000, interval: time.Second, batch: bench.SteadyBatchSize},
		{spec: "10000:100ms:10000", rate: 10000, interval: 100 * time.Millisecond, batch: 10000},
		{spec: "500/2000:1s", rate: 500, step: 2000, interval: time.Second, batch: bench.SteadyBatchSize},
		{spec: "500/2000/4000:1s", wantErr: true},
		{spec: "500/x:1s", wantErr: true},
		{spec: "2000", wantErr: true},
		{spec: "0:1s", wantErr: true},
	}
	for _, tt := range tests {
		rate, step, interval, batch, err := parseRate(tt.spec)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseRate(%q) error = %v, want error %v", tt.spec, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && (rate != tt.rate || step != tt.step || interval != tt.interval || batch != tt.batch) {
			t.Errorf("parseRate(%q) = %d, %d, %v, %d; want %d, %d, %v, %d", tt.spec,
				rate, step, interval, batch, tt.rate, tt.step, tt.interval, tt.batch)
		}
	}
}
