//go:build !linux

package replication

// canAwait says socket.await can wait on the socket itself: not here.
const canAwait = false

// setLowWater is a no-op where the low-water mark is not known to spare
// the wake-ups (see socket.quiet).
func setLowWater(uintptr, int) {}

func readable(uintptr) bool { return true }

// queued cannot tell here: a TLS stream is then never taken as drained
// (it reads at once instead of waiting).
func queued(uintptr) int { return -1 }
