package kmodel

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/xskgate/xskgate/internal/xsk"
)

// Receiver takes the frames a port transmits: a wired [Port], a [Sink], or
// anything a test supplies. Deliver must copy frame before returning and
// reports false when it dropped it (veth_xmit's NET_XMIT_DROP).
type Receiver interface {
	Deliver(frame []byte) bool
}

// Port models the kernel side of one AF_XDP socket, in copy mode or, with
// Config.ZeroCopy, on a zero-copy driver.
type Port struct {
	cfg    Config
	umem   []byte
	fs     uint64 // chunk size
	rxOff  uint64 // Headroom + XDP_PACKET_HEADROOM
	maxRx  int    // RX frame size: chunk - headroom - 256
	txSkb  []byte // the frame as sent, when TX metadata changes it (tx.go)
	prefix int    // bytes the modelled program prepends to every frame (RecordHead)
	// racePending: a veth race was drawn for frame raceDrawn, alone in its
	// poll, and waits for the next frame that has a successor.
	racePending bool
	raceDrawn   uint64
	closed      atomic.Bool
	peer        Receiver

	// User-side views, handed out by Rings.
	uFill *xsk.FillRing
	uComp *xsk.CompRing
	uRx   *xsk.RxRing
	uTx   *xsk.TxRing

	// Kernel-side views of the same memory.
	fill kring[uint64]
	comp kring[uint64]
	rx   kring[xsk.Desc]
	tx   kring[xsk.Desc]

	in backlog

	// NAPI state, owned by whoever holds napiMu.
	napiMu   sync.Mutex
	rxFrames uint64
	rxRng    *rand.Rand
	rxFaults int
	// held is the pool's free list (pool->free_list): buffers taken off
	// FILL but not used, reused before FILL is read again.
	held []uint64
	// Zero-copy only (zerocopy.go): the driver's ring of buffers taken
	// ahead of frames, and the stream of XDP drop decisions.
	drv    drvRing
	xdpRng *rand.Rand
	// starved: a zero-copy driver ran out of buffers, set NEED_WAKEUP on
	// FILL and takes no frame until WakeRx (Deliver does not wake it).
	starved atomic.Bool

	// sendto state, owned by whoever holds txMu (xs->mutex).
	txMu     sync.Mutex
	txDescs  uint64
	txRng    *rand.Rand
	lostRng  *rand.Rand // LostCompletion draws: a stream of their own
	txFaults int

	stats    stats
	counters counters

	injMu    sync.Mutex
	injected []Injection

	lifeMu  sync.Mutex // Start and Close
	wake    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	started bool
}

// kring is the kernel's view of one ring: the shared index words and slots,
// plus the kernel's private cached indices (struct xsk_queue).
type kring[T any] struct {
	prod, cons, flags *uint32
	slots             []T
	mask              uint32
	// The kernel's side: for FILL and TX, cachedCons is ours (published on
	// release) and cachedProd the user's as last loaded; for RX and COMP the
	// reverse.
	cachedProd, cachedCons uint32
}

func newKring[T any](mem []byte, size uint32) kring[T] {
	off := xsk.KernelOffsets
	base := unsafe.Pointer(unsafe.SliceData(mem))
	return kring[T]{
		prod:  (*uint32)(unsafe.Add(base, off.Producer)),
		cons:  (*uint32)(unsafe.Add(base, off.Consumer)),
		flags: (*uint32)(unsafe.Add(base, off.Flags)),
		slots: unsafe.Slice((*T)(unsafe.Add(base, off.Desc)), size),
		mask:  size - 1,
	}
}

// consEntries returns how many entries a kernel consumer (FILL, TX) can read,
// loading the user's producer (acquire) only when the cache is exhausted, as
// xskq_cons_nb_entries does.
func (r *kring[T]) consEntries() uint32 {
	if r.cachedProd == r.cachedCons {
		r.cachedProd = atomic.LoadUint32(r.prod)
	}
	return r.cachedProd - r.cachedCons
}

// prodFree returns the free slots for a kernel producer (RX, COMP), loading
// the user's consumer (acquire) only when fewer than want are known free, as
// xskq_prod_nb_free does. A scribbled consumer yields a wrong count, never a
// panic: slots are masked.
func (r *kring[T]) prodFree(want uint32) uint32 {
	size := r.mask + 1
	free := size - (r.cachedProd - r.cachedCons)
	if free >= want && free <= size {
		return free
	}
	r.cachedCons = atomic.LoadUint32(r.cons)
	free = size - (r.cachedProd - r.cachedCons)
	if free > size {
		return 0
	}
	return free
}

func (r *kring[T]) slot(i uint32) *T { return &r.slots[i&r.mask] }

// backlog is the bounded input queue in front of the NAPI poll, like veth's
// ptr_ring: Deliver copies into preallocated buffers, the poll reads them in
// place and then frees the entries.
type backlog struct {
	mu         sync.Mutex
	head, tail uint64 // free running; head is the poll's, tail Deliver's
	bufs       []byte // n buffers of bufSize bytes
	lens       []int  // frame length (may exceed bufSize: stored truncated)
	bufSize    int
	n          uint64
}

func (b *backlog) frame(i uint64) (data []byte, n int) {
	s := i % b.n
	n = b.lens[s]
	off := int(s) * b.bufSize
	return b.bufs[off : off+min(n, b.bufSize)], n
}

type stats struct {
	rxDropped, rxInvalid, txInvalid, rxRingFull, fillEmpty, txEmpty atomic.Uint64
}

type counters struct {
	backlogged, backlogDrops, rxFrames, rxDescs, fillInvalid, txFrames, txPeerDrops atomic.Uint64
	xdpDrops, recycled, starved, wakeups                                            atomic.Uint64
}

// Counters are the model's own counters, beyond xdp_statistics.
type Counters struct {
	Backlogged   uint64 // frames Deliver queued
	BacklogDrops uint64 // frames Deliver refused, input queue full (veth rx_queue_N_drops)
	RxFrames     uint64 // frames polls took off the input queue
	RxDescs      uint64 // RX descriptors produced, faulty ones included (veth xdp_redirect)
	FillInvalid  uint64 // invalid FILL entries skipped (the kernel's unexported fq invalid_descs)
	TxFrames     uint64 // TX descriptors transmitted (handed to the peer) and completed
	TxPeerDrops  uint64 // of those, frames the peer refused (Kick returned EBUSY)
	XDPDrops     uint64 // frames the modelled XDP program dropped (Config.XDPDrop)
	Recycled     uint64 // zero-copy: buffers recycled before new FILL entries (XDP drop, RX ring full)
	Starved      uint64 // zero-copy: times the driver ran out of buffers and set NEED_WAKEUP on FILL
	Wakeups      uint64 // WakeRx calls
}

// NewPort builds a port and its rings. Its softirq goroutine is not running:
// call Start, or drive RX with Poll.
func NewPort(cfg Config) (*Port, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Port{
		cfg:   cfg,
		umem:  cfg.Umem,
		fs:    uint64(cfg.FrameSize),
		rxOff: uint64(cfg.Headroom) + PacketHeadroom,
		txSkb: make([]byte, cfg.FrameSize),
		maxRx: int(cfg.FrameSize - cfg.Headroom - PacketHeadroom),
		held:  make([]uint64, 0, 4),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
	}
	if cfg.Record == RecordHead {
		p.prefix = MetaSize
	}
	fillMem := xsk.RingMemory(cfg.FillSize, 8)
	compMem := xsk.RingMemory(cfg.CompSize, 8)
	rxMem := xsk.RingMemory(cfg.RxSize, 16)
	txMem := xsk.RingMemory(cfg.TxSize, 16)
	var err error
	if p.uFill, err = xsk.NewFillRing(fillMem, xsk.KernelOffsets, cfg.FillSize); err != nil {
		return nil, err
	}
	if p.uComp, err = xsk.NewCompRing(compMem, xsk.KernelOffsets, cfg.CompSize); err != nil {
		return nil, err
	}
	if p.uRx, err = xsk.NewRxRing(rxMem, xsk.KernelOffsets, cfg.RxSize); err != nil {
		return nil, err
	}
	if p.uTx, err = xsk.NewTxRing(txMem, xsk.KernelOffsets, cfg.TxSize); err != nil {
		return nil, err
	}
	p.fill = newKring[uint64](fillMem, cfg.FillSize)
	p.comp = newKring[uint64](compMem, cfg.CompSize)
	p.rx = newKring[xsk.Desc](rxMem, cfg.RxSize)
	p.tx = newKring[xsk.Desc](txMem, cfg.TxSize)
	// xp_assign_dev: copy mode has no driver to wake, so TX always needs a
	// sendto; FILL is never flagged.
	atomic.StoreUint32(p.tx.flags, ringNeedWakeup)

	bufSize := int(cfg.FrameSize)
	p.in = backlog{
		bufs:    make([]byte, cfg.Backlog*bufSize),
		lens:    make([]int, cfg.Backlog),
		bufSize: bufSize,
		n:       uint64(cfg.Backlog),
	}
	// Separate streams for the two paths: each is drawn only by its owner
	// (the poller, the sender), so neither depends on the other's timing.
	if cfg.Faults.rxEnabled() {
		p.rxRng = rand.New(rand.NewPCG(cfg.Faults.Seed, 0x6b6d6f64656c5258))
	}
	if cfg.Faults.SpuriousCompletion > 0 {
		p.txRng = rand.New(rand.NewPCG(cfg.Faults.Seed, 0x6b6d6f64656c5458))
	}
	if cfg.Faults.LostCompletion > 0 {
		p.lostRng = rand.New(rand.NewPCG(cfg.Faults.Seed, 0x6b6d6f644c6f7374))
	}
	if cfg.XDPDrop > 0 {
		p.xdpRng = rand.New(rand.NewPCG(cfg.Faults.Seed, 0x6b6d6f6458445044))
	}
	if cfg.ZeroCopy {
		p.drv = drvRing{bufs: make([]uint64, cfg.DriverRing)}
		// What one poll can recycle on top of a full driver ring: no
		// append on the hot path.
		p.held = make([]uint64, 0, cfg.DriverRing+cfg.NapiBudget+4)
	}
	return p, nil
}

// Rings returns the user-side views of the port's rings, as
// (*xsk.Socket).Rings does.
func (p *Port) Rings() (fill *xsk.FillRing, comp *xsk.CompRing, rx *xsk.RxRing, tx *xsk.TxRing) {
	return p.uFill, p.uComp, p.uRx, p.uTx
}

// Ifname and Queue identify the modelled (interface, queue).
func (p *Port) Ifname() string { return p.cfg.Ifname }

// Options is XDP_OPTIONS: whether the port models a zero-copy driver.
func (p *Port) Options() (xsk.Options, error) { return xsk.Options{ZeroCopy: p.cfg.ZeroCopy}, nil }
func (p *Port) Queue() int                    { return p.cfg.Queue }

// TxChecksum is xsk.Socket.TxChecksum: a UMEM with TX metadata, copy mode.
func (p *Port) TxChecksum() bool { return p.cfg.TxMetadataLen > 0 && !p.cfg.ZeroCopy }

// TxBatch is the number of descriptors one Kick moves at most.
func (p *Port) TxBatch() uint32 { return p.cfg.TxBudget }

// RxOffset is where inside its chunk a received frame starts:
// Headroom + XDP_PACKET_HEADROOM.
func (p *Port) RxOffset() uint64 { return p.rxOff }

// Stats returns the xdp_statistics counters as Linux 6.18 keeps them:
// RxDropped (no FILL buffer, or frame larger than chunk - headroom - 256),
// RxInvalidDescs (always 0: RX is kernel-produced), TxInvalidDescs,
// RxRingFull, RxFillRingEmptyDescs and TxRingEmptyDescs (each time a send
// found TX empty, including at the end of a send that drained it, as
// xskq_cons_read_desc counts). The error is always nil.
func (p *Port) Stats() (xsk.Statistics, error) {
	s := &p.stats
	return xsk.Statistics{
		RxDropped:            s.rxDropped.Load(),
		RxInvalidDescs:       s.rxInvalid.Load(),
		TxInvalidDescs:       s.txInvalid.Load(),
		RxRingFull:           s.rxRingFull.Load(),
		RxFillRingEmptyDescs: s.fillEmpty.Load(),
		TxRingEmptyDescs:     s.txEmpty.Load(),
	}, nil
}

// Counters returns the model's own counters.
func (p *Port) Counters() Counters {
	c := &p.counters
	return Counters{
		Backlogged:   c.backlogged.Load(),
		BacklogDrops: c.backlogDrops.Load(),
		RxFrames:     c.rxFrames.Load(),
		RxDescs:      c.rxDescs.Load(),
		FillInvalid:  c.fillInvalid.Load(),
		TxFrames:     c.txFrames.Load(),
		TxPeerDrops:  c.txPeerDrops.Load(),
		XDPDrops:     c.xdpDrops.Load(),
		Recycled:     c.recycled.Load(),
		Starved:      c.starved.Load(),
		Wakeups:      c.wakeups.Load(),
	}
}

// Injected returns a copy of the injection log, in injection order.
func (p *Port) Injected() []Injection {
	p.injMu.Lock()
	defer p.injMu.Unlock()
	return append([]Injection(nil), p.injected...)
}

func (p *Port) record(in Injection) {
	if in.Kind != VethRace {
		in.Drawn = in.N
	}
	p.injMu.Lock()
	p.injected = append(p.injected, in)
	p.injMu.Unlock()
}

// SetPeer sets where transmitted frames go (nil: discarded, as if sent).
// Call it before traffic flows; it is not synchronised with Kick.
func (p *Port) SetPeer(r Receiver) { p.peer = r }

// Wire makes a and b a veth pair: what one transmits on its queue arrives
// on the other's input queue (veth_xmit to the peer's rq of the same index).
func Wire(a, b *Port) {
	a.SetPeer(b)
	b.SetPeer(a)
}

// Deliver queues a frame for the port's next NAPI poll, copying it. It
// returns false, counting BacklogDrops, when the input queue is full or the
// port is closed (veth's ptr_ring full: the frame is dropped). Safe from any
// goroutine; it does not allocate.
func (p *Port) Deliver(frame []byte) bool {
	b := &p.in
	b.mu.Lock()
	if p.closed.Load() || b.tail-b.head == b.n {
		b.mu.Unlock()
		p.counters.backlogDrops.Add(1)
		return false
	}
	s := b.tail % b.n
	off := int(s) * b.bufSize
	copy(b.bufs[off:off+b.bufSize], frame)
	b.lens[s] = len(frame)
	b.tail++
	b.mu.Unlock()
	p.counters.backlogged.Add(1)
	// napi_schedule: wake the poller if it sleeps; a pending wake-up is
	// enough. A starved zero-copy driver has no buffer to receive into:
	// nothing raises its interrupt until WakeRx.
	if p.starved.Load() {
		return true
	}
	p.schedule()
	return true
}

// Start runs the port's softirq goroutine, which polls whenever frames are
// queued. Stop it with Close.
func (p *Port) Start() {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.started || p.closed.Load() {
		return
	}
	p.started = true
	p.wg.Add(1)
	go p.softirq()
}

func (p *Port) softirq() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		}
		// A poll that used its whole budget may leave frames: poll again
		// (napi_complete_done is not called), but let Close in between.
		for p.Poll() == p.cfg.NapiBudget {
			select {
			case <-p.stop:
				return
			default:
			}
		}
	}
}

// Close stops the softirq goroutine and waits for it. Afterwards Deliver
// drops and Kick returns ENETDOWN; the rings stay readable. Close is
// idempotent and always returns nil.
func (p *Port) Close() error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed.Swap(true) {
		return nil
	}
	close(p.stop)
	p.wg.Wait()
	return nil
}
