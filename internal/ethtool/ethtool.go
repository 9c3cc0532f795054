// Package ethtool is xskgate's one path to the SIOCETHTOOL ioctl, by hand:
// a device's driver statistics (ethtool -S, stats.go) and its channels
// (ethtool -l/-L, channels.go), both built on Reader.Do.
//
// Not github.com/safchain/ethtool: its Stats passes the stack-allocated
// ethtool_drvinfo to its ioctl helper as a uintptr, so when the helper's
// prologue grows the goroutine's stack the kernel writes the statistics
// count into the old, freed stack and the caller reads what the new one
// holds (zero: no statistics at all). Its GetChannels (v0.7.0, the newest
// release) does the same with ethtool_channels: the caller read zero
// queues, seen 4 times in 400 calls at varying stack depths on a veth
// (fixed upstream in safchain/ethtool#139, not yet released). Here every
// buffer the kernel reads or writes is a heap slice referenced by a real
// pointer in ifr_data, which neither the stack moving nor the GC can
// invalidate.
package ethtool

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader issues ethtool commands through one socket, made in the network
// namespace of the thread that called Open, so that it can be used later
// from any thread (the ioctl acts in the socket's namespace). A Reader
// holds nothing but the socket, each call its own buffers, so it may be
// used by several goroutines at once; Close only after the last use.
type Reader struct {
	fd int
}

// Open makes a Reader in the calling thread's network namespace.
func Open() (*Reader, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket for ethtool: %w", err)
	}
	return &Reader{fd: fd}, nil
}

// Close closes the socket.
func (r *Reader) Close() error { return unix.Close(r.fd) }

// Do issues SIOCETHTOOL on ifname with buf as ifr_data: buf holds the
// command's struct from <linux/ethtool.h>, its first word the ETHTOOL_*
// command, in native byte order, and receives what the kernel writes
// back. buf must be on the heap (a slice made with make, not a slice of
// a local array): that is what keeps the pointer valid if the stack
// moves during the call.
func (r *Reader) Do(ifname string, buf []byte) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	if len(buf) < 4 {
		return errors.New("ethtool: buffer without a command word")
	}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer // a real pointer: the GC and stack moves see it
		_    [24 - unsafe.Sizeof(uintptr(0))]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&buf[0])
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(r.fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(buf)
	if e != 0 {
		return e
	}
	return nil
}
