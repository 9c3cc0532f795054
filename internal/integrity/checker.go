package integrity

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flightrec"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// OpLost marks, in the flight recorder, a FILL entry the kernel consumed
// and never produced on RX.
const OpLost = flightrec.OpUser

func init() {
	flightrec.RegisterOp(OpLost, "Lost")
	flightrec.SetAuxFormatter(flightrec.Violation, func(aux uint32) string { return Class(aux).String() })
}

// Chunk states, one byte per chunk of the worker's share. The low nibble is
// the state, bit 4 the side (outer 0, inner 1) for FILL and TX, and stPend
// marks a post the engine announced (PostFill, PostTx) but that was not yet
// read back from the ring.
const (
	stApp  uint8 = iota // held by the worker: free list, batch, Inspector
	stFill              // posted to FILL, not yet back on RX
	stTx                // posted to TX, not yet back on COMPLETION
	stLost              // the kernel consumed its FILL entry and never returned it

	stKind     = 0x0f
	stSideBit  = 4
	stPend     = 0x80
	stSideMask = 1 << stSideBit
)

func fillOf(s engine.Side) uint8 { return stFill | uint8(s)<<stSideBit }
func txOf(s engine.Side) uint8   { return stTx | uint8(s)<<stSideBit }

// Checker is one worker's engine.Checker. Only that worker calls it.
type Checker struct {
	c      *Checks
	worker int
	socks  [2]sock

	ready     bool
	lo, hi    uint32  // the worker's share: chunk indices [lo, hi)
	share     uint32  // chunks per worker, to name a foreign chunk's owner
	own       []uint8 // state of chunk lo+i
	area      []byte
	batch     uint64
	now       int64  // flight recorder time of the current batch
	en        uint32 // enabled checks for the current batch
	freezeNow bool
	lastIdle  int64
}

// sock is the checker's view of one socket (one side of the worker).
type sock struct {
	side  engine.Side
	port  engine.Port
	iface string
	queue int
	fill  *xsk.FillRing
	tx    *xsk.TxRing
	rec   *flightrec.Recorder

	// FILL: what PostFill approved is read back from the ring itself at the
	// next hook, so the expected order is the ring's order and a post the
	// ring did not take returns to the worker.
	fillSeen uint32   // FILL index up to which slots were read back
	fillPend []uint32 // chunks approved by PostFill, not read back yet
	dq       []uint32 // chunks in FILL, in ring order: dq[dqHead&dqMask] is next
	dqMask   uint32
	dqHead   uint32
	dqTail   uint32

	txSeen uint32
	txPend []uint32

	rxSlot   uint32     // free-running RX index of the next descriptor
	compSlot uint32     // and of the next completion
	shadow   []xsk.Desc // last lap's descriptor per RX slot
	last     xsk.Desc   // previous RX descriptor
	haveLast bool
	// owed counts RX entries since the last good one that may or may not
	// have consumed a FILL entry (garbage addresses, unwritten slots): a
	// skip of up to owed entries is their doing, not a new fault.
	owed    uint32
	lastSeq uint32
	haveSeq bool
	seqGaps uint64
	// metaFallback: the driver refused metadata at run time (logged once).
	metaFallback bool

	// Idle reconciliation baseline.
	recon         bool
	baseDrops     uint64
	baseGaps      uint64
	lastDrops     uint64
	lastGaps      uint64
	reportedUnexp int64
}

func (s *sock) init(c *Checks, side engine.Side, p engine.Port) {
	s.side, s.port, s.iface, s.queue = side, p, p.Ifname(), p.Queue()
	fill, comp, rx, tx := p.Rings()
	s.fill, s.tx = fill, tx
	s.rec = flightrec.NewRecorder(s.iface, s.queue, c.cfg.RecorderSize)
	s.rec.SetChunkSize(uint32(c.fs), false)
	var fillSize, rxSize uint32 = 2048, 2048
	if fill != nil {
		fillSize = fill.Size()
		s.fillSeen, _ = fill.Indices()
	}
	if tx != nil {
		s.txSeen, _ = tx.Indices()
	}
	// Poison what the worker consumes, so that a slot the kernel publishes
	// without writing reads as xsk.Poison instead of a plausible old
	// descriptor. Set here, before the worker runs: the ring is the
	// worker's alone afterwards. Switching the check off at runtime stops
	// the detection; the (cheap) poisoning goes on.
	if rx != nil {
		rxSize = rx.Size()
		_, s.rxSlot = rx.Indices()
		rx.SetPoison(c.cfg.Poison)
	}
	if comp != nil {
		_, s.compSlot = comp.Indices()
		comp.SetPoison(c.cfg.Poison)
	}
	// The deque can hold more than the FILL ring: entries the kernel
	// consumed but whose RX descriptors are not read yet.
	n := 2 * fillSize
	s.dq = make([]uint32, n)
	s.dqMask = n - 1
	s.fillPend = make([]uint32, 0, 256)
	s.txPend = make([]uint32, 0, 256)
	s.shadow = make([]xsk.Desc, rxSize)
}

// begin starts a hook call: first-call setup, read-back of announced posts,
// batch number, clock and switches.
func (k *Checker) begin() {
	if !k.ready {
		k.setup()
	}
	for i := range k.socks {
		s := &k.socks[i]
		if len(s.fillPend) > 0 {
			k.syncFill(s)
		}
		if len(s.txPend) > 0 {
			k.syncTx(s)
		}
	}
	k.batch++
	k.now = flightrec.Now()
	k.en = k.c.enabled.Load()
}

// end applies the Freeze policy once the batch's dispositions are set.
func (k *Checker) end() {
	if k.freezeNow {
		k.freezeNow = false
		k.c.freeze(k.worker)
	}
}

// setup derives the worker's share exactly as engine.New does (equal
// shares of NumFrames/workers, in worker order); every NewChecker call has
// happened by the time a hook runs.
func (k *Checker) setup() {
	c := k.c
	n := uint32(max(c.checkers.Load(), 1))
	k.share = c.nframes / n
	k.lo = uint32(k.worker) * k.share
	k.hi = k.lo + k.share
	k.own = make([]uint8, k.share)
	k.area = c.umem.Area
	k.ready = true
	k.setThread()
}

func (k *Checker) setThread() {
	tid := unix.Gettid()
	for i := range k.socks {
		k.socks[i].rec.SetThread(-1, tid)
	}
}

func (k *Checker) on(ch Check) bool { return k.en&(1<<ch) != 0 }

// chunk splits addr; ok is false outside the UMEM.
func (k *Checker) chunk(addr uint64) (ci uint32, off uint64, ok bool) {
	if addr >= k.c.size {
		return 0, 0, false
	}
	// A shift, not a division: chunk runs several times per frame.
	return uint32(addr >> k.c.shift), addr & (k.c.fs - 1), true
}

func (k *Checker) mine(ci uint32) bool { return ci >= k.lo && ci < k.hi }

func (k *Checker) base(ci uint32) uint64 { return uint64(ci) << k.c.shift }

// stateString names a chunk state for reports.
func (k *Checker) stateString(st uint8) string {
	side := engine.Side(st & stSideMask >> stSideBit)
	var where string
	switch st & stKind {
	case stApp:
		return "held by worker " + fmt.Sprint(k.worker) + " (free list or in flight)"
	case stFill:
		where = "in FILL"
	case stTx:
		where = "on TX"
	case stLost:
		return "lost: its FILL entry was consumed by the kernel and never returned"
	default:
		return fmt.Sprintf("in state %#x", st)
	}
	s := &k.socks[side]
	if st&stPend != 0 {
		where += " (being posted)"
	}
	return fmt.Sprintf("%s of %s %s q%d", where, side, s.iface, s.queue)
}

// frameAt returns the bytes of a descriptor for the capture, clipped to
// its chunk; nil outside the UMEM.
func (k *Checker) frameAt(addr uint64, n uint32) []byte {
	_, off, ok := k.chunk(addr)
	if !ok || n == 0 {
		return nil
	}
	end := addr + min(uint64(n), k.c.fs-off)
	return k.area[addr:end]
}

// lastFrame returns, for an address-only entry (COMPLETION), the frame last
// received into its chunk if its metadata says how long it was.
func (k *Checker) lastFrame(addr uint64) []byte {
	ci, _, ok := k.chunk(addr)
	ro := k.c.cfg.RxOffset
	if !ok || ro == 0 || ro >= k.c.fs {
		return nil
	}
	a := k.base(ci) + ro
	m, strip, ok := k.c.cfg.Carrier.Locate(k.area, a, uint32(k.c.fs-ro), ro)
	if !ok {
		return nil
	}
	return k.frameAt(a+uint64(strip), m.Len)
}

func (k *Checker) violate(s *sock, v *Violation, frame []byte) {
	v.Worker, v.Iface, v.Queue, v.Batch, v.Time = k.worker, s.iface, s.queue, k.batch, time.Now()
	s.rec.RecordAt(k.now, flightrec.Violation, v.Addr, v.Len, uint32(k.batch), uint32(v.Class))
	var xdpLen uint32
	haveMeta := false
	if v.Ring == xsk.KindRx && frame != nil {
		// The evidence shows the frame as it was on the wire: without a
		// record carried in front of it.
		_, off, _ := k.chunk(v.Addr)
		var m xdpprog.Meta
		var strip uint32
		if m, strip, haveMeta = k.record(s, xsk.Desc{Addr: v.Addr, Len: v.Len}, off); haveMeta {
			xdpLen = m.Len
			frame = k.frameAt(v.Addr+uint64(strip), v.Len-strip)
		}
	}
	k.c.report(v, frame, xdpLen, haveMeta)
	switch k.c.cfg.Policy {
	case Freeze:
		k.freezeNow = true
	case Panic:
		panic("integrity violation: " + v.String())
	}
}

// Idle implements engine.Checker: about once a second it compares each
// socket's metadata sequence gaps with the kernel's drop counters.
func (k *Checker) Idle() {
	if !k.ready {
		return
	}
	now := flightrec.Now()
	if now-k.lastIdle < int64(time.Second) {
		return
	}
	k.lastIdle = now
	k.setThread() // the engine may have moved us to the worker's thread
	for i := range k.socks {
		k.reconcile(&k.socks[i])
	}
}

func (k *Checker) reconcile(s *sock) {
	st, err := s.port.Stats()
	if err != nil {
		return
	}
	drops := st.RxDropped + st.RxRingFull
	if !s.recon {
		s.recon = true
		s.baseDrops, s.baseGaps, s.lastDrops, s.lastGaps = drops, s.seqGaps, drops, s.seqGaps
		return
	}
	c := k.c
	c.gaps.Add(s.seqGaps - s.lastGaps)
	c.kdrops.Add(drops - s.lastDrops)
	s.lastDrops, s.lastGaps = drops, s.seqGaps
	// Drops at the tail show up as gaps only when the next frame arrives,
	// so only a growing excess of gaps over drops is a mismatch.
	unexp := int64(s.seqGaps-s.baseGaps) - int64(drops-s.baseDrops)
	if unexp > s.reportedUnexp {
		c.mismatch.Add(uint64(unexp - s.reportedUnexp))
		c.log.Warn("integrity: metadata sequence gaps exceed the kernel's drop counters",
			"worker", k.worker, "iface", s.iface, "queue", s.queue,
			"seq_gaps", s.seqGaps-s.baseGaps, "rx_dropped+rx_ring_full", drops-s.baseDrops, "unexplained", unexp)
		s.reportedUnexp = unexp
	}
}

var _ engine.Checker = (*Checker)(nil)
