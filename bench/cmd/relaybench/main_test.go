package main

import (
	"os"
	"path/filepath"
	"testing"
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
