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
// and never produced on RX; OpSpare a frame the worker took off its free
// list for a frame of the Inspector's own (engine.Extra).
const (
	OpLost  = flightrec.OpUser
	OpSpare = flightrec.OpUser + 1
)

func init() {
	flightrec.RegisterOp(OpLost, "Lost")
	flightrec.RegisterOp(OpSpare, "Spare")
	flightrec.SetAuxFormatter(flightrec.Violation, func(aux uint32) string { return Class(aux).String() })
}

// Chunk states, one byte per chunk of the worker's share. The low nibble is
// the state; bit 4 the side (outer 0, inner 1) of the ring it is in or came
// from; bits 5-6 the age of a TX entry in sweeps (txage.go); stPend marks a
// post the engine announced (PostFill, PostTx) but that was not yet read
// back from the ring. The transitions the engine's design uses, and only
// those, are allowed (doc.go has the table).
const (
	stFree  uint8 = iota // on the worker's free list: never posted, or a post the ring did not take
	stFill               // posted to FILL, not yet back on RX
	stRx                 // held after RX: batch, Inspector, TX queue (or freed by a drop verdict)
	stTx                 // posted to TX, not yet back on COMPLETION
	stComp               // back from COMPLETION: on the free list
	stSpare              // taken off the free list for an Extra frame, not yet on TX
	stLost               // the kernel consumed its FILL entry and never returned it

	stKind     = 0x0f
	stSideBit  = 4
	stSideMask = 1 << stSideBit
	stAgeOne   = 0x20
	stAgeMask  = 0x60
	stPend     = 0x80
)

func fillOf(s engine.Side) uint8 { return stFill | uint8(s)<<stSideBit }
func txOf(s engine.Side) uint8   { return stTx | uint8(s)<<stSideBit }
func rxOf(s engine.Side) uint8   { return stRx | uint8(s)<<stSideBit }
func compOf(s engine.Side) uint8 { return stComp | uint8(s)<<stSideBit }

// held reports whether the worker holds a chunk in state st (no ring has
// it): it may go to FILL, or be taken for an Extra frame.
func held(st uint8) bool {
	switch st & stKind {
	case stFree, stRx, stComp, stSpare:
		return st&stPend == 0
	}
	return false
}

// sendable reports whether a chunk in state st may go on TX: a received
// frame (forward, bounce) or one taken for an Extra frame. A free or
// completed chunk holds no frame to send.
func sendable(st uint8) bool {
	k := st & stKind
	return (k == stRx || k == stSpare) && st&stPend == 0
}

// Checker is one worker's engine.Checker. Only that worker calls it.
type Checker struct {
	c      *Checks
	worker int
	socks  [2]sock

	ready  bool
	lo, hi uint32  // the worker's share: chunk indices [lo, hi)
	share  uint32  // chunks per worker, to name a foreign chunk's owner
	own    []uint8 // state of chunk lo+i
	// rxAt is where in chunk lo+i the frame last received into it lies:
	// offset<<16 | length (0: none), for the evidence of an address-only
	// entry (lastFrame). Kept here because the bytes in front of the
	// frame, the XDP program's record included, may be overwritten by
	// then (AF_XDP TX metadata for a checksum the kernel completes).
	rxAt      []uint32
	area      []byte
	batch     uint64
	now       int64  // flight recorder time of the current batch
	en        uint32 // enabled checks for the current batch
	freezeNow bool
	lastIdle  int64
	idleN     uint32 // Idle calls, for reading the clock every 16th
	lastSweep int64  // flight recorder time of the last TX age sweep
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
	// zc: bound in zero-copy mode (the port's XDP_OPTIONS, else
	// Config.ZeroCopy): RX need not follow FILL order, and rxOff is 0
	// (only the chunk bounds hold).
	zc    bool
	rxOff uint64

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
	// TX age sweeps (txage.go): COMPLETION index at the last sweep.
	sweepComp uint32

	// Idle reconciliation: the counters at the last look.
	lastDrops     uint64
	lastGaps      uint64
	reportedUnexp int64
}

// boundMode is a port that says how the kernel bound it (*xsk.Socket's
// XDP_OPTIONS; the kernel model's).
type boundMode interface {
	Options() (xsk.Options, error)
}

func (s *sock) init(c *Checks, side engine.Side, p engine.Port) {
	s.side, s.port, s.iface, s.queue = side, p, p.Ifname(), p.Queue()
	fill, comp, rx, tx := p.Rings()
	s.fill, s.tx = fill, tx
	s.rec = flightrec.NewRecorder(s.iface, s.queue, c.cfg.RecorderSize)
	s.rec.SetChunkSize(uint32(c.fs), false)
	s.zc = c.cfg.ZeroCopy
	if o, ok := p.(boundMode); ok {
		if opt, err := o.Options(); err == nil {
			s.zc = opt.ZeroCopy
		}
	}
	if !s.zc {
		s.rxOff = c.cfg.RxOffset
	}
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
	k.syncPosts()
	k.batch++
	k.now = flightrec.Now()
	en := k.c.enabled.Load()
	if en&^k.en&(1<<CheckOrder) != 0 {
		// The order check is back on: entries the kernel skipped while
		// it was off are at the front of the FILL order. The next good
		// descriptor resynchronises past them without a report.
		for i := range k.socks {
			k.socks[i].owed = k.socks[i].dqLen()
		}
	}
	k.en = en
	if k.now-k.lastSweep >= k.c.sweepEvery {
		k.sweepTx()
	}
}

// syncPosts reads back the posts announced since the last hook.
func (k *Checker) syncPosts() {
	for i := range k.socks {
		s := &k.socks[i]
		if len(s.fillPend) > 0 {
			k.syncFill(s)
		}
		if len(s.txPend) > 0 {
			k.syncTx(s)
		}
	}
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
	k.rxAt = make([]uint32, k.share)
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
	s := &k.socks[side]
	var where string
	switch st & stKind {
	case stFree:
		return "free (on worker " + fmt.Sprint(k.worker) + "'s free list)"
	case stRx:
		return fmt.Sprintf("held by worker %d since it was received on %s %s q%d", k.worker, side, s.iface, s.queue)
	case stComp:
		return fmt.Sprintf("free since it completed on %s %s q%d", side, s.iface, s.queue)
	case stSpare:
		return fmt.Sprintf("held by worker %d for an Extra frame to %s %s q%d", k.worker, side, s.iface, s.queue)
	case stFill:
		where = "in FILL"
	case stTx:
		where = "on TX"
	case stLost:
		return "lost: its FILL entry was consumed by the kernel and never returned"
	default:
		return fmt.Sprintf("in state %#x", st)
	}
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

// lastFrame returns, for an address-only entry (COMPLETION, FILL), the
// frame last received into its chunk, and only if the kernel cannot be
// writing the chunk now: one that is in a FILL ring (or whose FILL entry
// the kernel consumed), or another worker's whose state this checker does
// not know, may be receiving a frame this instant, so its bytes prove
// nothing and reading them races with the device.
func (k *Checker) lastFrame(addr uint64) []byte {
	ci, _, ok := k.chunk(addr)
	if !ok || !k.mine(ci) {
		return nil
	}
	if st := k.own[ci-k.lo] & stKind; st == stFill || st == stLost {
		return nil
	}
	at := k.rxAt[ci-k.lo]
	if at == 0 {
		return nil
	}
	return k.frameAt(k.base(ci)+uint64(at>>16), at&0xffff)
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
	// The last posts before the worker went idle are still to be read
	// back: their state (and age) must not wait for the next batch.
	k.syncPosts()
	// The clock is what an idle loop costs most (a vDSO call, slower
	// under some hypervisors: 4% of a saturated worker's time here), and
	// the sweep and the reconciliation below need it only coarsely: read
	// it every 16th idle loop (a worker spins 256 before it sleeps).
	if k.idleN++; k.idleN&15 != 1 {
		return
	}
	now := flightrec.Now()
	if now-k.lastSweep >= k.c.sweepEvery {
		k.now = now
		k.sweepTx()
		k.end()
	}
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
	c := k.c
	c.gaps.Add(s.seqGaps - s.lastGaps)
	c.kdrops.Add(drops - s.lastDrops)
	s.lastDrops, s.lastGaps = drops, s.seqGaps
	// Both count from the socket's start (the kernel's counters start at
	// 0, and the frames numbered before the first one received count as
	// gaps). Drops at the tail show up as gaps only when the next frame
	// arrives, so gaps never exceed drops without a leak; an excess that
	// grows is one.
	unexp := int64(s.seqGaps) - int64(drops)
	if unexp > s.reportedUnexp {
		c.mismatch.Add(uint64(unexp - s.reportedUnexp))
		c.log.Warn("integrity: metadata sequence gaps exceed the kernel's drop counters",
			"worker", k.worker, "iface", s.iface, "queue", s.queue,
			"seq_gaps", s.seqGaps, "rx_dropped+rx_ring_full", drops, "unexplained", unexp)
		s.reportedUnexp = unexp
	}
}

var _ engine.Checker = (*Checker)(nil)
