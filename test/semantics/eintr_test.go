// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// Syscalls as an application makes them, retried on EINTR
// (testenv.RetryEINTR).

func retry[T any](f func() (T, error)) (T, error) { return testenv.RetryEINTR(f) }

func rd(fd int, b []byte) (int, error) {
	return retry(func() (int, error) { return unix.Read(fd, b) })
}

func wr(fd int, b []byte) (int, error) {
	return retry(func() (int, error) { return unix.Write(fd, b) })
}

func recvFrom(fd int, b []byte, flags int) (int, unix.Sockaddr, error) {
	var from unix.Sockaddr
	n, err := retry(func() (int, error) {
		n, f, err := unix.Recvfrom(fd, b, flags)
		from = f
		return n, err
	})
	return n, from, err
}

func sendmsgN(fd int, p, oob []byte, to unix.Sockaddr, flags int) (int, error) {
	return retry(func() (int, error) { return unix.SendmsgN(fd, p, oob, to, flags) })
}

func recvmsg(fd int, p, oob []byte, flags int) (n, oobn, recvflags int, from unix.Sockaddr, err error) {
	for {
		n, oobn, recvflags, from, err = unix.Recvmsg(fd, p, oob, flags)
		if err != unix.EINTR {
			return
		}
	}
}

func splice(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int64, error) {
	return retry(func() (int64, error) { return unix.Splice(rfd, roff, wfd, woff, n, flags) })
}

func vmsplice(fd int, iovs []unix.Iovec, flags int) (int, error) {
	return retry(func() (int, error) { return unix.Vmsplice(fd, iovs, flags) })
}

func sendfileSys(out, in int, off *int64, n int) (int, error) {
	return retry(func() (int, error) { return unix.Sendfile(out, in, off, n) })
}

func epollWaitSys(ep int, ev []unix.EpollEvent, ms int) (int, error) {
	return retry(func() (int, error) { return unix.EpollWait(ep, ev, ms) })
}

func pollSys(p []unix.PollFd, ms int) (int, error) {
	return retry(func() (int, error) { return unix.Poll(p, ms) })
}
