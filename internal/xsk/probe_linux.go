package xsk

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is returned by a probe when the kernel lacks the feature.
var ErrNotSupported = errors.New("not supported by this kernel")

// ProbeTxMetadata tells whether the kernel accepts a UMEM with a TX
// metadata area (XDP_UMEM_TX_METADATA_LEN: AF_XDP TX metadata such as
// checksum offload and launch time, Linux 6.11+ with the flag): it
// registers a one-page UMEM with a 16-byte area on a fresh socket. nil: it
// does; ErrNotSupported: it refuses the flag; any other error: unknown
// (creating the socket needs CAP_NET_RAW).
func ProbeTxMetadata() error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return socketError(err)
	}
	defer unix.Close(fd)
	page := os.Getpagesize()
	area, err := unix.Mmap(-1, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("map a %d-byte probe UMEM: %w", page, err)
	}
	defer unix.Munmap(area)
	reg := unix.XDPUmemReg{
		Addr:            uint64(uintptr(unsafe.Pointer(unsafe.SliceData(area)))),
		Len:             uint64(page),
		Size:            2048,
		Flags:           unix.XDP_UMEM_TX_METADATA_LEN,
		Tx_metadata_len: 16,
	}
	switch err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL):
		// An unknown UMEM flag is EINVAL; the rest of the request is
		// valid on every kernel with AF_XDP.
		return ErrNotSupported
	default:
		return fmt.Errorf("register a probe UMEM: %w", err)
	}
}

// ProbeTxBudget tells whether the kernel has XDP_MAX_TX_SKB_BUDGET (Linux
// 6.17+: more than 32 descriptors per copy-mode sendto, rings.tx_budget).
// nil: it has; ErrNotSupported: it has not; other errors: unknown.
func ProbeTxBudget() error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return socketError(err)
	}
	defer unix.Close(fd)
	if err := setsockoptInt(fd, unix.XDP_TX_RING, 64); err != nil {
		return fmt.Errorf("create a probe tx ring: %w", err)
	}
	switch err := setsockoptInt(fd, unix.XDP_MAX_TX_SKB_BUDGET, 32); {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOPROTOOPT):
		return ErrNotSupported
	default:
		return fmt.Errorf("set a probe tx budget: %w", err)
	}
}
