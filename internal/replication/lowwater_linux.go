package replication

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// canAwait says socket.await can wait on the socket itself.
const canAwait = true

// setLowWater sets fd's SO_RCVLOWAT: epoll reports it readable, and TCP
// wakes its waiters, only once n bytes are queued (or the receive buffer
// or window is nearly full).
func setLowWater(fd uintptr, n int) {
	_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
}

// readable reports whether the kernel would wake a reader of fd now (its
// low-water mark applies), or fd has an error or hung up.
func readable(fd uintptr) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds[:], 0)
	return err != nil || n > 0
}

// queued is how many bytes are queued on fd to be read (SIOCINQ); -1
// when it cannot tell.
func queued(fd uintptr) int {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		return -1
	}
	return n
}
