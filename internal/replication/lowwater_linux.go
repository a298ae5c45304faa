package replication

import "syscall"

// setLowWater sets fd's SO_RCVLOWAT: epoll reports it readable, and TCP
// wakes its waiters, only once n bytes are queued.
func setLowWater(fd uintptr, n int) {
	_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
}
