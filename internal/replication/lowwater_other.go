//go:build !linux

package replication

// setLowWater is a no-op where the low-water mark is not known to spare
// the wake-ups (see socket.quiet).
func setLowWater(uintptr, int) {}
