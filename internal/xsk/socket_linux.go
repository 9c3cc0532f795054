package xsk

import (
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewUmem validates cfg and maps the packet memory. No socket exists yet:
// the first Open registers the UMEM with the kernel.
func NewUmem(cfg UmemConfig) (*Umem, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	size := int(cfg.NumFrames) * int(cfg.FrameSize)
	// MAP_POPULATE: fault the pages in now, not on the first packet.
	area, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map %d-byte UMEM: %w", size, err)
	}
	return &Umem{Area: area, cfg: cfg, unmap: unix.Munmap}, nil
}

// SocketConfig describes one socket: an (interface, queue) and its rings.
type SocketConfig struct {
	Ifindex int
	Queue   int
	RxSize  uint32 // RX entries; 0 for a TX-only socket
	TxSize  uint32 // TX entries; 0 for an RX-only socket
	// TxBudget raises XDP_MAX_TX_SKB_BUDGET (descriptors one copy-mode
	// sendto may move, default 32) where the kernel has it (6.17+). 0 keeps
	// the default; a kernel without the option is not an error.
	TxBudget uint32
}

// Socket is one AF_XDP socket bound to an (interface, queue) on the shared
// UMEM, with its own FILL and COMPLETION rings.
type Socket struct {
	Fill *FillRing
	Comp *CompRing
	Rx   *RxRing // nil when RxSize was 0
	Tx   *TxRing // nil when TxSize was 0

	fd      int
	ifindex int
	ifname  string
	queue   int
	umem    *Umem
	maps    [][]byte
	txBatch uint32 // descriptors one sendto moves
}

// Open creates a socket for cfg's (interface, queue), gives it FILL and
// COMPLETION rings (the kernel needs one pair per (interface, queue) on a
// shared UMEM), maps its rings and binds it. The first socket registers the
// UMEM; later ones share it.
//
// Sockets resolve the interface in the network namespace of the calling
// thread: call Open on a thread locked into the right namespace.
func (u *Umem) Open(cfg SocketConfig) (_ *Socket, err error) {
	if u.Area == nil {
		return nil, ErrClosed
	}
	if u.foreign {
		return nil, errors.New("open socket: this UMEM wraps caller memory (UmemOn) and cannot be registered with the kernel")
	}
	if cfg.RxSize == 0 && cfg.TxSize == 0 {
		return nil, errors.New("socket needs an RX or a TX ring (both sizes are 0)")
	}
	for _, r := range []struct {
		name string
		v    uint32
	}{{"rx", cfg.RxSize}, {"tx", cfg.TxSize}} {
		if r.v&(r.v-1) != 0 {
			return nil, fmt.Errorf("%s ring size %d is not a power of two", r.name, r.v)
		}
	}
	ifi, err := net.InterfaceByIndex(cfg.Ifindex)
	if err != nil {
		return nil, fmt.Errorf("interface index %d not found in this network namespace: %w", cfg.Ifindex, err)
	}
	for _, o := range u.socks {
		if o.ifindex == cfg.Ifindex && o.queue == cfg.Queue {
			return nil, fmt.Errorf("%s queue %d already has a socket on this UMEM", ifi.Name, cfg.Queue)
		}
	}
	if n, err := QueueCount(ifi.Name); err == nil && cfg.Queue >= n {
		return nil, fmt.Errorf("%s has %d queues, queue %d does not exist: use a queue below %d or raise the count with ethtool -L", ifi.Name, n, cfg.Queue, n)
	}

	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, socketError(err)
	}
	s := &Socket{fd: fd, ifindex: cfg.Ifindex, ifname: ifi.Name, queue: cfg.Queue, umem: u, txBatch: 32}
	defer func() {
		if err != nil {
			s.release()
		}
	}()

	var regFlags uint32 // of the UMEM registration this socket made
	if u.owner == nil {
		reg := unix.XDPUmemReg{
			Addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(u.Area)))),
			Len:      uint64(len(u.Area)),
			Size:     u.cfg.FrameSize,
			Headroom: u.cfg.Headroom,
		}
		if u.cfg.Unaligned {
			reg.Flags |= unix.XDP_UMEM_UNALIGNED_CHUNK_FLAG
		}
		if u.cfg.TxMetadata {
			reg.Flags |= unix.XDP_UMEM_TX_METADATA_LEN
			reg.Tx_metadata_len = TxMetadataLen
		}
		// Pass all 32 bytes: a 24-byte (v1) option silently ignores flags.
		err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg))
		if errors.Is(err, unix.EINVAL) && u.cfg.TxMetadata {
			// A kernel before 6.11 does not know the flag (6.8-6.10 took
			// the length without it; older ones ignore it): register
			// without TX metadata (TxMetadataLen says so).
			reg.Flags &^= unix.XDP_UMEM_TX_METADATA_LEN
			reg.Tx_metadata_len = 0
			err = setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg))
		}
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("register %d-byte UMEM: %w: over the locked-memory limit; run as root with CAP_IPC_LOCK or raise RLIMIT_MEMLOCK", len(u.Area), err)
			}
			return nil, fmt.Errorf("register UMEM (frame size %d, headroom %d): %w", u.cfg.FrameSize, u.cfg.Headroom, err)
		}
		regFlags = reg.Flags
	}
	if err := setsockoptInt(fd, unix.XDP_UMEM_FILL_RING, u.cfg.FillSize); err != nil {
		return nil, fmt.Errorf("create fill ring of %d entries: %w", u.cfg.FillSize, err)
	}
	if err := setsockoptInt(fd, unix.XDP_UMEM_COMPLETION_RING, u.cfg.CompSize); err != nil {
		return nil, fmt.Errorf("create completion ring of %d entries: %w", u.cfg.CompSize, err)
	}
	if cfg.RxSize > 0 {
		if err := setsockoptInt(fd, unix.XDP_RX_RING, cfg.RxSize); err != nil {
			return nil, fmt.Errorf("create rx ring of %d entries: %w", cfg.RxSize, err)
		}
	}
	if cfg.TxSize > 0 {
		if err := setsockoptInt(fd, unix.XDP_TX_RING, cfg.TxSize); err != nil {
			return nil, fmt.Errorf("create tx ring of %d entries: %w", cfg.TxSize, err)
		}
	}

	var off unix.XDPMmapOffsets
	optlen := uint32(unsafe.Sizeof(off))
	if err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), &optlen); err != nil {
		return nil, fmt.Errorf("read ring offsets: %w", err)
	}
	if optlen != uint32(unsafe.Sizeof(off)) {
		return nil, fmt.Errorf("read ring offsets: kernel returned %d bytes, want %d (kernel too old: need Linux 5.4+)", optlen, unsafe.Sizeof(off))
	}
	mapRing := func(pgoff int64, o unix.XDPRingOffset, n, ent uint32) ([]byte, RingOffsets, error) {
		ro := RingOffsets{o.Producer, o.Consumer, o.Desc, o.Flags}
		m, err := unix.Mmap(fd, pgoff, int(o.Desc)+int(n*ent), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, ro, fmt.Errorf("map ring at %#x: %w", pgoff, err)
		}
		s.maps = append(s.maps, m)
		return m, ro, nil
	}
	m, ro, err := mapRing(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, u.cfg.FillSize, 8)
	if err != nil {
		return nil, err
	}
	if s.Fill, err = NewFillRing(m, ro, u.cfg.FillSize); err != nil {
		return nil, err
	}
	if m, ro, err = mapRing(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, u.cfg.CompSize, 8); err != nil {
		return nil, err
	}
	if s.Comp, err = NewCompRing(m, ro, u.cfg.CompSize); err != nil {
		return nil, err
	}
	if cfg.RxSize > 0 {
		if m, ro, err = mapRing(unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RxSize, 16); err != nil {
			return nil, err
		}
		if s.Rx, err = NewRxRing(m, ro, cfg.RxSize); err != nil {
			return nil, err
		}
	}
	if cfg.TxSize > 0 {
		if m, ro, err = mapRing(unix.XDP_PGOFF_TX_RING, off.Tx, cfg.TxSize, 16); err != nil {
			return nil, err
		}
		if s.Tx, err = NewTxRing(m, ro, cfg.TxSize); err != nil {
			return nil, err
		}
		if cfg.TxBudget > 0 {
			switch err := setsockoptInt(fd, unix.XDP_MAX_TX_SKB_BUDGET, cfg.TxBudget); {
			case err == nil:
				s.txBatch = cfg.TxBudget
			case errors.Is(err, unix.ENOPROTOOPT):
				// Kernel before 6.17: keep 32 per sendto.
			default:
				return nil, fmt.Errorf("set tx budget %d (must be in [32, tx ring size %d]): %w", cfg.TxBudget, cfg.TxSize, err)
			}
		}
	}

	sa := unix.SockaddrXDP{Ifindex: uint32(cfg.Ifindex), QueueID: uint32(cfg.Queue)}
	if u.owner == nil {
		switch u.cfg.Mode {
		case ModeCopy:
			sa.Flags |= unix.XDP_COPY
		case ModeZeroCopy:
			sa.Flags |= unix.XDP_ZEROCOPY
		}
		if !u.cfg.NoNeedWakeup {
			sa.Flags |= unix.XDP_USE_NEED_WAKEUP
		}
	} else {
		// Mode and need_wakeup are inherited: the kernel refuses them here.
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(u.owner.fd)
	}
	if err := bindRetry(fd, &sa); err != nil {
		switch {
		case errors.Is(err, unix.EOPNOTSUPP) && u.owner != nil && u.owner.zeroCopy():
			// A socket sharing the UMEM is bound in the mode the first
			// one was granted (xp_assign_dev_shared), so auto mode
			// forces zero-copy on every later one.
			return nil, fmt.Errorf("bind %s queue %d: the UMEM's first socket (%s queue %d) was granted zero-copy and every socket sharing a UMEM inherits that mode, but %s has no AF_XDP zero-copy support: set the bind mode to copy",
				ifi.Name, cfg.Queue, u.owner.ifname, u.owner.queue, ifi.Name)
		case errors.Is(err, unix.EOPNOTSUPP) && u.cfg.Mode == ModeZeroCopy:
			return nil, fmt.Errorf("bind %s queue %d in zero-copy mode: %s has no AF_XDP zero-copy support (veth is copy mode only): use copy or auto mode", ifi.Name, cfg.Queue, ifi.Name)
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("bind %s queue %d: %w: another AF_XDP socket holds this queue (is another xskgate running?)", ifi.Name, cfg.Queue, err)
		case errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("bind %s queue %d: %w: queue out of range, or rings missing", ifi.Name, cfg.Queue, err)
		}
		return nil, fmt.Errorf("bind %s queue %d: %w", ifi.Name, cfg.Queue, err)
	}
	if u.owner == nil {
		u.owner = s
		u.txMeta = 0
		if u.cfg.TxMetadata && regFlags&unix.XDP_UMEM_TX_METADATA_LEN != 0 {
			u.txMeta = TxMetadataLen
		}
	}
	u.socks = append(u.socks, s)
	return s, nil
}

// bindRetry binds, retrying briefly on EBUSY: right after a previous owner
// of the queue exits, the kernel may still be tearing its socket down.
func bindRetry(fd int, sa *unix.SockaddrXDP) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Bind(fd, sa)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func socketError(err error) error {
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("create AF_XDP socket: %w: kernel built without CONFIG_XDP_SOCKETS", err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("create AF_XDP socket: %w: needs root (CAP_NET_RAW): run as root", err)
	}
	return fmt.Errorf("create AF_XDP socket: %w", err)
}

// setsockopt and getsockopt pass a struct (xdp_umem_reg, xdp_mmap_offsets,
// xdp_statistics): golang.org/x/sys/unix has typed helpers for ints
// (SetsockoptInt, GetsockoptInt, used for the rings and XDP_OPTIONS) but
// none for these structs.
func setsockopt(fd int, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func setsockoptInt(fd int, opt int, v uint32) error {
	return unix.SetsockoptInt(fd, unix.SOL_XDP, opt, int(v))
}

func getsockopt(fd int, opt int, p unsafe.Pointer, n *uint32) error {
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(n)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// FD is the socket's file descriptor, for the XSKMAP.
func (s *Socket) FD() int { return s.fd }

// Ifindex, Ifname and Queue identify what the socket is bound to.
func (s *Socket) Ifindex() int    { return s.ifindex }
func (s *Socket) Ifname() string  { return s.ifname }
func (s *Socket) Queue() int      { return s.queue }
func (s *Socket) Umem() *Umem     { return s.umem }
func (s *Socket) TxBatch() uint32 { return s.txBatch }

// Kick asks the kernel to transmit what is on the TX ring:
// sendto(fd, NULL, 0, MSG_DONTWAIT). In copy mode it runs the transmit on
// the calling core and moves at most TxBatch descriptors.
//
// It returns the raw errno without allocating: 0; EAGAIN (budget spent,
// COMPLETION full or device busy: retry later); EBUSY (the device dropped a
// frame; it still completes); others (ENETDOWN, ENXIO, ENOBUFS) are errors
// to count, never to panic on.
func (s *Socket) Kick() unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// WakeRx wakes the kernel to refill from FILL in zero-copy mode:
// recvfrom(fd, NULL, 0, MSG_DONTWAIT).
func (s *Socket) WakeRx() unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// Statistics mirrors struct xdp_statistics (v2, 48 bytes).
type Statistics struct {
	RxDropped            uint64 // no FILL buffer, or frame too large
	RxInvalidDescs       uint64
	TxInvalidDescs       uint64
	RxRingFull           uint64
	RxFillRingEmptyDescs uint64
	TxRingEmptyDescs     uint64
}

// Stats reads XDP_STATISTICS.
func (s *Socket) Stats() (Statistics, error) {
	var st unix.XDPStatistics
	n := uint32(unsafe.Sizeof(st))
	if err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), &n); err != nil {
		return Statistics{}, fmt.Errorf("read statistics of %s queue %d: %w", s.ifname, s.queue, err)
	}
	return Statistics{st.Rx_dropped, st.Rx_invalid_descs, st.Tx_invalid_descs, st.Rx_ring_full, st.Rx_fill_ring_empty_descs, st.Tx_ring_empty_descs}, nil
}

// Options mirrors struct xdp_options.
type Options struct {
	ZeroCopy bool
}

// TxChecksum tells whether a frame sent on this socket can ask the kernel
// to complete its checksum (SetTxChecksum): the UMEM has a TX metadata
// area and the socket is in copy mode, where the kernel hands the request
// to the device as an ordinary CHECKSUM_PARTIAL skb (xsk_build_skb), which
// the device's offload or the stack's software fallback completes. In
// zero-copy mode the driver must implement the request itself, and one
// that does not ignores it, so zero-copy sockets say no.
func (s *Socket) TxChecksum() bool {
	return s.umem.txMeta > 0 && !s.zeroCopy()
}

func (s *Socket) zeroCopy() bool {
	o, err := s.Options()
	return err == nil && o.ZeroCopy
}

// Options reads XDP_OPTIONS: whether the socket ended up in zero-copy mode.
func (s *Socket) Options() (Options, error) {
	// struct xdp_options is one __u32 of flags.
	v, err := unix.GetsockoptInt(s.fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return Options{}, fmt.Errorf("read options of %s queue %d: %w", s.ifname, s.queue, err)
	}
	return Options{ZeroCopy: v&unix.XDP_OPTIONS_ZEROCOPY != 0}, nil
}

// Close unmaps the rings and closes the socket. Detach the XDP program (or
// remove the socket from the XSKMAP) first, so no frame is redirected to a
// socket on its way out. Frames on the socket's rings are gone with it.
func (s *Socket) Close() error {
	if s.fd < 0 {
		return nil
	}
	u := s.umem
	for i, o := range u.socks {
		if o == s {
			u.socks = append(u.socks[:i], u.socks[i+1:]...)
			break
		}
	}
	if u.owner == s && len(u.socks) > 0 {
		// The kernel refcounts the UMEM: the other sockets keep it alive.
		// New sockets share through a remaining one.
		u.owner = u.socks[0]
	} else if u.owner == s {
		u.owner = nil
	}
	return s.release()
}

func (s *Socket) release() error {
	var errs []error
	for _, m := range s.maps {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, err)
		}
	}
	s.maps = nil
	s.Fill, s.Comp, s.Rx, s.Tx = nil, nil, nil, nil
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, err)
		}
		s.fd = -1
	}
	return errors.Join(errs...)
}

// Close closes every socket still open and unmaps the UMEM.
func (u *Umem) Close() error {
	var errs []error
	for len(u.socks) > 0 {
		if err := u.socks[len(u.socks)-1].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if u.Area != nil {
		if err := u.unmap(u.Area); err != nil {
			errs = append(errs, err)
		}
		u.Area = nil
	}
	return errors.Join(errs...)
}

// Rings returns the socket's four rings (Rx or Tx may be nil). The engine
// reaches rings only through this, so a kernel model can stand in.
func (s *Socket) Rings() (fill *FillRing, comp *CompRing, rx *RxRing, tx *TxRing) {
	return s.Fill, s.Comp, s.Rx, s.Tx
}
