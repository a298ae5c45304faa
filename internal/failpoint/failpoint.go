// Package failpoint lets fault-injection tests kill the relay at exact
// points of the pipeline. It is inert unless the binary is built with
// `-tags failpoints`; production builds compile every Hit to a no-op.
//
// With the tag, RELAY_FAILPOINT=<name> makes the process SIGKILL itself the
// (RELAY_FAILPOINT_SKIP+1)-th time it reaches that point.
package failpoint

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// Points a test can name.
const (
	AfterPending      = "after-pending"       // the batch's range is recorded as pending; not written
	AfterSinkWrite    = "after-sink-write"    // ClickHouse accepted the batch; its record not done, nothing deleted or confirmed
	AfterDelete       = "after-delete"        // delivered rows deleted and the record done; LSN not confirmed
	AfterStatusUpdate = "after-status-update" // a newer flushed LSN was sent to PostgreSQL

	ReplayBeforeCommit = "deadletter-replay-before-commit" // relay deadletter replay moved the rows; not committed
	ReplayAfterCommit  = "deadletter-replay-after-commit"  // the move is committed; nothing printed yet
)

// Set is the armed failpoint of a process; a nil Set never fires.
type Set struct {
	name string
	skip int64
	hits atomic.Int64
}

// FromEnv arms the failpoint named in environ, when compiled in.
func FromEnv(environ map[string]string) *Set {
	if !compiled || environ["RELAY_FAILPOINT"] == "" {
		return nil
	}
	skip, _ := strconv.ParseInt(environ["RELAY_FAILPOINT_SKIP"], 10, 64)
	return &Set{name: environ["RELAY_FAILPOINT"], skip: skip}
}

// Hit kills the process if name is the armed point and its skips are used up.
func (s *Set) Hit(name string) {
	if s == nil || name != s.name {
		return
	}
	if s.hits.Add(1) <= s.skip {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be handled; never continue past the point
}
