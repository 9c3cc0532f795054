package bench

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RingGenerator sends frames from an AF_PACKET socket's TX ring
// (PACKET_TX_RING, TPACKET_V2) with PACKET_QDISC_BYPASS: the fallback for
// kernels that refuse live-frame BPF_PROG_RUN (Linux 6.18 fc-v1294 answers
// EPERM). Each ring slot holds a complete frame, written once when the ring
// is made; before a slot is sent again only the bytes a Varier changes are
// rewritten. One send(2) hands the kernel every slot marked
// TP_STATUS_SEND_REQUEST; it copies the Ethernet header into an skb,
// attaches the rest of the slot as a page fragment and calls the driver
// directly (no qdisc), and gives the slot back (TP_STATUS_AVAILABLE) when
// the skb is freed.
//
// What the kernel took back from the ring is what Sent counts; a veth
// that drops an skb it was handed (its peer's ring full) counts that in the
// sending device's tx_dropped, not here.
type RingGenerator struct {
	fd       int
	ring     []byte // the mmap'd TX ring
	slots    int
	slotSize int
	frames   [][]byte // slot s holds frames[s%len(frames)]
	vary     Varier
	ifindex  int

	sent  atomic.Uint64 // slots the kernel gave back as sent
	bad   atomic.Uint64 // slots it refused (TP_STATUS_WRONG_FORMAT)
	busy  atomic.Uint64 // send(2) calls that returned ENOBUFS/EAGAIN
	limit time.Duration
	// Nice is the generating thread's nice value during a Run (0: as it
	// is).
	Nice int

	// Run's own state (one Run at a time).
	head, tail int  // next slot to fill; oldest slot in flight
	inFlight   int  // slots from tail to head, marked for sending
	unsent     bool // the last send(2) left slots marked
}

// Varier rewrites, in place, the bytes of a frame that change from one
// copy to the next (k counts the copies from 0), keeping its checksums
// valid. The frame is the one the previous call left in that slot, or the
// generator's template on a slot's first use.
type Varier interface {
	Vary(f []byte, k uint64)
}

// Ring geometry: up to 4096 slots of 128 bytes (the 32-byte tpacket2_hdr,
// then the frame), 32 to a page-sized block: 512 KiB, far more than the
// frames in flight at once (the veth peer's ring holds 256). Larger frames
// take 2048-byte slots (8 MiB), two to a block.
const (
	ringSlotSize    = 128
	ringBigSlotSize = 2048
	ringBlockSize   = 4096
	ringSlots       = 4096
	// ringDataOff is where TPACKET_V2 reads a frame from its slot when
	// PACKET_TX_HAS_OFF is not set: tp_hdrlen - sizeof(sockaddr_ll) =
	// TPACKET_ALIGN(sizeof(struct tpacket2_hdr)).
	ringDataOff = 32
	// ringBatch is how many slots are marked before one send(2).
	ringBatch = 256
	// ringSndBuf bounds the bytes of skbs in flight (sk_wmem_alloc); the
	// default (212992) is about 300 small skbs and would make the ring
	// wait on the socket instead of on the device.
	ringSndBuf = 8 << 20
)

// tpacket2_hdr.tp_status is the first word of a slot; tp_len the second.
const (
	hdrStatus = 0
	hdrLen    = 4
)

// NewRingGenerator makes the socket and its ring on ifindex, and writes
// frame into every slot. Call it from a thread in the interface's network
// namespace (the socket stays there); vary may be nil (every copy the
// same). limit bounds a Run (0: 10 minutes).
func NewRingGenerator(ifindex int, frame []byte, vary Varier, limit time.Duration) (_ *RingGenerator, err error) {
	return NewRingGeneratorMix(ifindex, [][]byte{frame}, vary, limit)
}

// NewRingGeneratorMix is NewRingGenerator with several frames sent in turn
// (slot s holds frames[s%len(frames)], the slot count a multiple of
// len(frames)): an IMIX in the ratio of its entries.
func NewRingGeneratorMix(ifindex int, frames [][]byte, vary Varier, limit time.Duration) (_ *RingGenerator, err error) {
	if len(frames) == 0 {
		return nil, errors.New("ring generator: no frame to send")
	}
	slotSize := ringSlotSize
	for _, f := range frames {
		if len(f) > ringSlotSize-ringDataOff {
			slotSize = ringBigSlotSize
		}
	}
	for _, f := range frames {
		if len(f) < 14 || len(f) > slotSize-ringDataOff {
			return nil, fmt.Errorf("ring generator frame of %d bytes: need 14 to %d", len(f), ringBigSlotSize-ringDataOff)
		}
	}
	// A whole number of blocks and of frame cycles.
	per := ringBlockSize / slotSize
	step := per * len(frames) / gcd(per, len(frames))
	slots := ringSlots / step * step
	if slots == 0 {
		return nil, fmt.Errorf("ring generator: %d frames do not fit a cycle in %d slots", len(frames), ringSlots)
	}
	if limit == 0 {
		limit = 10 * time.Minute
	}
	// Protocol 0: the socket receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	g := &RingGenerator{fd: fd, slots: slots, slotSize: slotSize, frames: frames, vary: vary, ifindex: ifindex, limit: limit}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return nil, fmt.Errorf("set TPACKET_V2: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		return nil, fmt.Errorf("set PACKET_QDISC_BYPASS: %w", err)
	}
	// SO_SNDBUFFORCE needs CAP_NET_ADMIN, which the bench has; without
	// it the default buffer only lowers the ceiling.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, ringSndBuf); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, ringSndBuf)
	}
	req := unix.TpacketReq{Block_size: ringBlockSize, Block_nr: uint32(slots / per),
		Frame_size: uint32(slotSize), Frame_nr: uint32(slots)}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return nil, fmt.Errorf("set PACKET_TX_RING: %w", err)
	}
	g.ring, err = unix.Mmap(fd, 0, slots*slotSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap TX ring: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		return nil, fmt.Errorf("bind packet socket to ifindex %d: %w", ifindex, err)
	}
	for s := 0; s < slots; s++ {
		copy(g.data(s), frames[s%len(frames)])
	}
	return g, nil
}

// status is slot s's tp_status word. The kernel writes it from other CPUs
// (the skb destructor), so it is read and written atomically; the
// mapping is page-aligned and slots are 128 bytes, so it is aligned.
func (g *RingGenerator) status(s int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&g.ring[s*g.slotSize+hdrStatus]))
}

func (g *RingGenerator) data(s int) []byte {
	off := s*g.slotSize + ringDataOff
	n := len(g.frames[s%len(g.frames)])
	return g.ring[off : off+n : off+n]
}

// Sent is how many frames the kernel took from the ring and released.
func (g *RingGenerator) Sent() uint64 { return g.sent.Load() }

// Refused is how many slots the kernel refused as malformed.
func (g *RingGenerator) Refused() uint64 { return g.bad.Load() }

// Busy is how many send(2) calls found the device busy (ENOBUFS) or the
// socket's buffer full (EAGAIN); their frames stay queued in the ring and
// leave with a later call.
func (g *RingGenerator) Busy() uint64 { return g.busy.Load() }

// Run sends until stop is closed or the generator's limit passes, at
// rate frames/s (0: as fast as the core allows), on the calling thread
// pinned to cpu (-1: not pinned).
func (g *RingGenerator) Run(cpu int, rate float64, stop <-chan struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	undo, err := pinThread(cpu, g.Nice)
	if err != nil {
		return err
	}
	defer undo()
	var (
		k        uint64 // copies made
		interval time.Duration
		start    = time.Now()
		deadline = start.Add(g.limit)
		next     = start // when the next frame is due (paced)
		// Paced, frames leave in small bursts of about 50 µs worth
		// (1 to 32 frames), so that a send(2) is not paid per frame.
		burst = 1
	)
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
		if interval <= 0 {
			interval = 1
		}
		burst = max(1, min(32, int(rate/20000)))
	}
	maxLag := max(time.Duration(g.slots)*interval, 20*time.Millisecond)
	for iter := 0; ; iter++ {
		if iter&63 == 0 {
			select {
			case <-stop:
				g.drain()
				return nil
			default:
			}
			if time.Now().After(deadline) {
				g.drain()
				return fmt.Errorf("generator ran past its limit of %v", g.limit)
			}
		}
		g.reap()
		n := min(ringBatch, g.slots-g.inFlight)
		if interval > 0 && n > 0 {
			now := time.Now()
			due := int(now.Sub(next)/interval) + 1
			if now.Before(next) || due < burst {
				continue // spin: the core is the generator's
			}
			n = min(n, due)
			next = next.Add(time.Duration(n) * interval)
			// Fell behind (the core was taken away): catch up on at most
			// the ring's worth of frames or 20 ms, whichever is more,
			// then go on from now rather than send a longer burst.
			if now.Sub(next) > maxLag {
				next = now
			}
		}
		for i := 0; i < n; i++ {
			h := g.head
			if g.vary != nil {
				g.vary.Vary(g.data(h), k)
			}
			k++
			*(*uint32)(unsafe.Pointer(&g.ring[h*g.slotSize+hdrLen])) = uint32(len(g.frames[h%len(g.frames)]))
			g.status(h).Store(unix.TP_STATUS_SEND_REQUEST)
			g.head = (h + 1) % g.slots
			g.inFlight++
		}
		if n == 0 && !g.unsent {
			continue
		}
		if err := g.send(); err != nil {
			return err
		}
	}
}

// reap moves the tail over the slots the kernel is done with.
func (g *RingGenerator) reap() {
	for g.inFlight > 0 {
		st := g.status(g.tail).Load()
		if st&(unix.TP_STATUS_SEND_REQUEST|unix.TP_STATUS_SENDING) != 0 {
			return
		}
		if st&unix.TP_STATUS_WRONG_FORMAT != 0 {
			g.bad.Add(1)
		} else {
			g.sent.Add(1)
		}
		g.tail = (g.tail + 1) % g.slots
		g.inFlight--
	}
}

// send asks the kernel to transmit every slot marked for sending, without
// waiting for their skbs to be freed.
func (g *RingGenerator) send() error {
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(g.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	g.unsent = false
	switch errno {
	case 0:
		return nil
	case unix.ENOBUFS, unix.EAGAIN, unix.EINTR:
		// The slot that failed is marked again (tpacket_snd's
		// out_status); it leaves with the next call.
		g.busy.Add(1)
		g.unsent = true
		return nil
	}
	return fmt.Errorf("send from TX ring: %w", errno)
}

// drain sends what is marked and waits briefly for the slots in flight,
// so that Sent is final.
func (g *RingGenerator) drain() {
	deadline := time.Now().Add(500 * time.Millisecond)
	for g.reap(); g.inFlight > 0 && time.Now().Before(deadline); g.reap() {
		g.send()
		time.Sleep(100 * time.Microsecond)
	}
}

// Close unmaps the ring and closes the socket.
func (g *RingGenerator) Close() error {
	var errs []error
	if g.ring != nil {
		errs = append(errs, unix.Munmap(g.ring))
		g.ring = nil
	}
	if g.fd >= 0 {
		errs = append(errs, unix.Close(g.fd))
		g.fd = -1
	}
	return errors.Join(errs...)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
