//go:build unix

package h1

import (
	"errors"
	"net"
	"syscall"
)

// open reports whether a kept connection is still open: a peek that does
// not wait finds nothing to read. A server that closed it while idle has
// sent EOF; one that sent bytes unasked is not speaking HTTP/1.1 to us.
func open(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
