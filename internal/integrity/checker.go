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

func (s *sock) dqLen() uint32 { return s.dqTail - s.dqHead }

func (s *sock) front() (uint32, bool) {
	if s.dqTail == s.dqHead {
		return 0, false
	}
	return s.dq[s.dqHead&s.dqMask], true
}

// depth is ci's distance from the front of the FILL order, -1 if absent.
func (s *sock) depth(ci uint32) int {
	for i := s.dqHead; i != s.dqTail; i++ {
		if s.dq[i&s.dqMask] == ci {
			return int(i - s.dqHead)
		}
	}
	return -1
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
	return uint32(addr / k.c.fs), addr & (k.c.fs - 1), true
}

func (k *Checker) mine(ci uint32) bool { return ci >= k.lo && ci < k.hi }

func (k *Checker) base(ci uint32) uint64 { return uint64(ci) * k.c.fs }

// syncFill reads back the FILL slots the engine wrote since the last look.
// Approved chunks found there join the expected order; approved chunks not
// found were not posted (the ring was short) and are the worker's again.
func (k *Checker) syncFill(s *sock) {
	prod, _ := s.fill.Indices()
	if prod-s.fillSeen > s.fill.Size() {
		// Our own producer index moved beyond a ring's worth: a scribble
		// (the engine's CheckOwn reports it); do not walk garbage.
		s.fillSeen = prod - s.fill.Size()
	}
	for i := s.fillSeen; i != prod; i++ {
		raw := *s.fill.Slot(i)
		ci, _, ok := k.chunk(raw)
		if !ok || !k.mine(ci) {
			// The kernel skips an out-of-UMEM entry silently (§7.2); a
			// foreign one we cannot track. PostFill vetoes both, so this
			// was posted without asking.
			continue
		}
		st := k.own[ci-k.lo]
		want := fillOf(s.side) | stPend
		if st != want {
			k.postedUnchecked(s, xsk.KindFill, raw, st)
		}
		k.own[ci-k.lo] = fillOf(s.side)
		k.push(s, ci)
	}
	s.fillSeen = prod
	for _, ci := range s.fillPend {
		if k.own[ci-k.lo] == fillOf(s.side)|stPend {
			k.own[ci-k.lo] = stApp
		}
	}
	s.fillPend = s.fillPend[:0]
}

func (k *Checker) push(s *sock, ci uint32) {
	if s.dqLen() > s.dqMask {
		// More FILL entries outstanding than twice the ring: the oldest
		// can no longer be in the kernel's hands.
		k.lose(s, 1)
	}
	s.dq[s.dqTail&s.dqMask] = ci
	s.dqTail++
}

// lose pops n entries off the FILL order: the kernel consumed them and
// never returned them.
func (k *Checker) lose(s *sock, n int) {
	for range n {
		ci := s.dq[s.dqHead&s.dqMask]
		s.dqHead++
		k.own[ci-k.lo] = stLost
		s.rec.RecordAt(k.now, OpLost, k.base(ci), 0, uint32(k.batch), 0)
	}
	k.c.lost.Add(uint64(n))
}

// syncTx is syncFill for TX: approved descriptors the ring did not take
// went back to the worker's free list.
func (k *Checker) syncTx(s *sock) {
	prod, _ := s.tx.Indices()
	if prod-s.txSeen > s.tx.Size() {
		s.txSeen = prod - s.tx.Size()
	}
	for i := s.txSeen; i != prod; i++ {
		d := *s.tx.Slot(i)
		ci, _, ok := k.chunk(d.Addr)
		if !ok || !k.mine(ci) {
			continue
		}
		if st := k.own[ci-k.lo]; st != txOf(s.side)|stPend {
			k.postedUnchecked(s, xsk.KindTx, d.Addr, st)
		}
		k.own[ci-k.lo] = txOf(s.side)
	}
	s.txSeen = prod
	for _, ci := range s.txPend {
		if k.own[ci-k.lo] == txOf(s.side)|stPend {
			k.own[ci-k.lo] = stApp
		}
	}
	s.txPend = s.txPend[:0]
}

// postedUnchecked reports a chunk found in a FILL or TX ring that the
// engine did not submit to the checker, if it was in a ring already.
func (k *Checker) postedUnchecked(s *sock, ring xsk.Kind, addr uint64, st uint8) {
	var cls Class
	switch st & stKind {
	case stTx:
		cls = FillWhileTx
		if ring == xsk.KindTx {
			cls = TxNotOwned
		}
	case stFill, stLost:
		cls = DoubleFill
		if ring == xsk.KindTx {
			cls = TxNotOwned
		}
	default:
		return // held by the worker: a legal post that skipped the hook
	}
	if !k.on(CheckOwnership) {
		return
	}
	k.violate(s, &Violation{Class: cls, Ring: ring, Addr: addr,
		Detail: "found in the ring without PostFill/PostTx approval; chunk was " + k.stateString(st)}, nil)
}

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

// PostFill implements engine.Checker.
func (k *Checker) PostFill(side engine.Side, addrs []uint64, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	for i, a := range addrs {
		s.rec.RecordAt(k.now, flightrec.FillPost, a, 0, b, 0)
		ci, _, ok := k.chunk(a)
		if !ok {
			if k.on(CheckBounds) {
				k.violate(s, &Violation{Class: BadAddr, Ring: xsk.KindFill, Addr: a, Expected: k.c.size, Got: a,
					Detail: "FILL entry beyond the UMEM: the kernel would skip it silently and the frame would be lost"}, nil)
				out[i] = engine.Quarantine
				nbad++
			}
			continue
		}
		if !k.mine(ci) {
			if k.on(CheckOwnership) {
				k.violate(s, &Violation{Class: ForeignFrame, Ring: xsk.KindFill, Addr: a, Detail: k.foreign(ci)}, nil)
				out[i] = engine.Quarantine
				nbad++
			}
			continue
		}
		st := k.own[ci-k.lo]
		if st != stApp && k.on(CheckOwnership) {
			cls := DoubleFill
			if st&stKind == stTx {
				cls = FillWhileTx
			}
			// The bytes in the chunk are the frame it is busy with (on
			// TX, or received): capture those.
			k.violate(s, &Violation{Class: cls, Ring: xsk.KindFill, Addr: a,
				Detail: "chunk is " + k.stateString(st)}, k.lastFrame(a))
			out[i] = engine.Quarantine
			nbad++
			continue
		}
		k.own[ci-k.lo] = fillOf(side) | stPend
		s.fillPend = append(s.fillPend, ci)
	}
	k.end()
	return nbad
}

func (k *Checker) foreign(ci uint32) string {
	if k.share == 0 {
		return "chunk of another worker"
	}
	return fmt.Sprintf("chunk %d belongs to worker %d (worker %d owns chunks [%d, %d))", ci, ci/k.share, k.worker, k.lo, k.hi)
}

// PostTx implements engine.Checker.
func (k *Checker) PostTx(side engine.Side, descs []xsk.Desc, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	fs := k.c.fs
	for i, d := range descs {
		s.rec.RecordAt(k.now, flightrec.TxPost, d.Addr, d.Len, b, 0)
		ci, off, ok := k.chunk(d.Addr)
		cls := noClass
		var exp, got uint64
		if k.on(CheckBounds) {
			switch {
			case !ok:
				cls, exp, got = BadAddr, k.c.size, d.Addr
			case d.Len == 0 || off+uint64(d.Len) > fs:
				cls, exp, got = BadLen, fs-off, uint64(d.Len)
			case d.Options != 0:
				cls, got = BadOptions, uint64(d.Options)
			}
		}
		if cls == noClass && ok && k.on(CheckOwnership) {
			if !k.mine(ci) {
				cls = ForeignFrame
			} else if st := k.own[ci-k.lo]; st != stApp {
				cls = TxNotOwned
			}
		}
		if cls != noClass {
			v := &Violation{Class: cls, Ring: xsk.KindTx, Addr: d.Addr, Len: d.Len, Expected: exp, Got: got}
			switch cls {
			case ForeignFrame:
				v.Detail = k.foreign(ci)
			case TxNotOwned:
				v.Detail = "chunk is " + k.stateString(k.own[ci-k.lo])
			case BadAddr:
				v.Detail = "TX address beyond the UMEM"
			case BadLen:
				v.Detail = "TX length zero or crossing the chunk end"
			case BadOptions:
				v.Detail = "TX options set"
			}
			k.violate(s, v, k.frameAt(d.Addr, d.Len))
			out[i] = engine.Quarantine
			nbad++
			continue
		}
		if !ok || !k.mine(ci) {
			continue // the check is off: untrackable
		}
		k.own[ci-k.lo] = txOf(side) | stPend
		s.txPend = append(s.txPend, ci)
	}
	k.end()
	return nbad
}

// Completed implements engine.Checker.
func (k *Checker) Completed(side engine.Side, addrs []uint64, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	for i, a := range addrs {
		slot := s.compSlot
		s.compSlot++
		s.rec.RecordAt(k.now, flightrec.CompRecv, a, 0, b, slot)
		ci, _, ok := k.chunk(a)
		cls := noClass
		var detail string
		switch {
		case a == xsk.Poison && k.on(CheckPoison):
			cls, detail = UnwrittenSlot, "COMPLETION slot still poisoned: published without being written"
		case !ok:
			if k.on(CheckBounds) {
				cls, detail = BadAddr, "completion beyond the UMEM"
			}
		case !k.mine(ci):
			if k.on(CheckOwnership) {
				cls, detail = ForeignFrame, k.foreign(ci)
			}
		default:
			st := k.own[ci-k.lo]
			if st == txOf(side) {
				k.own[ci-k.lo] = stApp
				continue
			}
			if k.on(CheckOwnership) {
				cls, detail = CompletionNotSent, "chunk is "+k.stateString(st)
			}
		}
		if cls == noClass {
			continue
		}
		v := &Violation{Class: cls, Ring: xsk.KindComp, Slot: slot, Addr: a, Detail: detail}
		if cls == BadAddr {
			v.Expected, v.Got = k.c.size, a
		}
		k.violate(s, v, k.lastFrame(a))
		out[i] = engine.Quarantine
		nbad++
	}
	k.end()
	return nbad
}

// Received implements engine.Checker.
func (k *Checker) Received(side engine.Side, descs []xsk.Desc, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	for i, d := range descs {
		slot := s.rxSlot
		s.rxSlot++
		s.rec.RecordAt(k.now, flightrec.RxRecv, d.Addr, d.Len, b, slot)
		if disp := k.rx(s, d, slot); disp != engine.Keep {
			out[i] = disp
			nbad++
		}
		s.shadow[slot&uint32(len(s.shadow)-1)] = d
		s.last, s.haveLast = d, true
	}
	k.end()
	return nbad
}

// rx checks one RX descriptor in the order poison, bounds, ownership,
// order, metadata, IP length, and moves its chunk from FILL to the worker.
func (k *Checker) rx(s *sock, d xsk.Desc, slot uint32) engine.Disposition {
	c := k.c
	exp, _ := s.front()
	if k.on(CheckPoison) {
		if d.Addr == xsk.Poison {
			return k.rxGarbage(s, d, slot, UnwrittenSlot, "slot holds the poison written when it was released: published by the kernel without being written")
		}
		if d == (xsk.Desc{}) {
			return k.rxGarbage(s, d, slot, UninitializedDesc, "all-zero descriptor: a slot published without ever being written")
		}
	}
	ci, off, ok := k.chunk(d.Addr)
	if !ok {
		if k.on(CheckBounds) {
			return k.rxGarbage(s, d, slot, BadAddr, "RX address beyond the UMEM")
		}
		s.owed++
		return engine.Keep // the engine drops it as an invalid descriptor
	}
	cls := noClass
	var vexp, vgot uint64
	var detail string
	if k.on(CheckBounds) {
		fs := c.fs
		switch {
		case c.cfg.RxOffset != 0 && off != c.cfg.RxOffset:
			cls, vexp, vgot, detail = BadAddr, c.cfg.RxOffset, off, "RX offset in chunk is not headroom + 256"
		case d.Len == 0 || off+uint64(d.Len) > fs:
			cls, vexp, vgot, detail = BadLen, fs-off, uint64(d.Len), "RX length zero or beyond the chunk"
		case d.Options != 0:
			cls, vgot, detail = BadOptions, uint64(d.Options), "RX options set (no multi-buffer)"
		}
	}
	if !k.mine(ci) {
		s.owed++
		if cls == noClass && k.on(CheckOwnership) {
			cls, detail = ForeignFrame, k.foreign(ci)
		}
		if cls == noClass {
			return engine.Keep // the engine quarantines it itself
		}
		return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
	}

	m, strip, haveMeta := k.record(s, d, off)
	regress := haveMeta && s.haveSeq && !k.c.cfg.NoSeqOrder && int32(m.Seq-s.lastSeq) <= 0

	st := k.own[ci-k.lo]
	if st != fillOf(s.side) {
		// Not waiting in this socket's FILL: the kernel cannot have
		// written into it. Stale or invented; the chunk is live elsewhere.
		s.owed++
		if cls == noClass && k.on(CheckOwnership) {
			cls, vexp, vgot = RxNotInFill, uint64(exp)*c.fs, k.base(ci)
			if s.haveLast && d == s.last {
				cls = Duplicate
			}
			detail = "chunk is " + k.stateString(st)
		}
		if cls == noClass {
			return engine.Keep
		}
		return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
	}

	depth := s.depth(ci)
	if depth != 0 {
		// In FILL but not next. Either the kernel skipped entries (Drop,
		// an invalid entry) or this descriptor is old: the previous one
		// again, last lap's value of the slot, or older metadata than
		// what we already saw. An old one must not move the FILL order:
		// the chunk is still queued in the kernel.
		stale := depth < 0 || (s.haveLast && d == s.last) || d == s.shadow[slot&uint32(len(s.shadow)-1)] || regress
		if stale {
			s.owed++
			if cls == noClass {
				switch {
				case s.haveLast && d == s.last:
					if k.on(CheckOwnership) {
						cls = Duplicate
					}
				case regress && k.on(CheckMetadata):
					cls, vexp, vgot = SeqRegression, uint64(s.lastSeq)+1, uint64(m.Seq)
				case k.on(CheckOwnership):
					cls = StaleDesc
				}
				if cls == Duplicate || cls == StaleDesc {
					vexp, vgot = uint64(exp)*c.fs, k.base(ci)
				}
				detail = fmt.Sprintf("chunk is still queued in FILL (%d entries behind the next one): an old descriptor", depth)
			}
			if cls == noClass {
				return engine.Keep
			}
			return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
		}
		if uint32(depth) > s.owed && cls == noClass && k.on(CheckOrder) {
			cls, vexp, vgot = OutOfOrder, uint64(exp)*c.fs, k.base(ci)
			detail = fmt.Sprintf("chunk was %d deep in FILL: the kernel consumed the %d entries before it without producing them; marked lost", depth, depth)
		}
		k.lose(s, depth)
	} else if regress && k.on(CheckMetadata) {
		// Next in FILL yet carrying older metadata: the kernel did not
		// write this frame, so the chunk is still queued; leave it.
		s.owed++
		if cls == noClass {
			cls, vexp, vgot = SeqRegression, uint64(s.lastSeq)+1, uint64(m.Seq)
			detail = "metadata sequence went backwards: two NAPI polls of one queue interleaved (the veth race signature)"
		}
		return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
	}
	// The kernel consumed this FILL entry for this slot.
	s.dqHead++
	s.owed = 0
	k.own[ci-k.lo] = stApp
	if haveMeta {
		if s.haveSeq {
			s.seqGaps += uint64(m.Seq - s.lastSeq - 1)
		}
		s.lastSeq, s.haveSeq = m.Seq, true
	}
	if cls == noClass && k.on(CheckMetadata) && c.cfg.Carrier != xdpprog.CarrierNone && (off >= xdpprog.MetaSize || c.cfg.Carrier == xdpprog.CarrierHead) {
		switch {
		case !haveMeta:
			cls, vexp, vgot, detail = BadMeta, uint64(xdpprog.MetaMagic), uint64(m.Magic), "no XDP program record with the frame (carrier "+c.cfg.Carrier.String()+")"
			if c.cfg.Carrier == xdpprog.CarrierHead {
				vexp = uint64(xdpprog.HeadMagic)
			}
		case m.Len != d.Len-strip:
			cls, vexp, vgot, detail = MetaLenMismatch, uint64(m.Len), uint64(d.Len-strip), "descriptor length differs from what the XDP program saw"
		case int(m.Queue) != s.queue:
			cls, vexp, vgot, detail = BadMeta, uint64(s.queue), uint64(m.Queue), "XDP metadata names another queue"
		}
	}
	if f := k.frameAt(d.Addr+uint64(strip), d.Len-strip); cls == noClass && k.on(CheckIPLength) && len(f) == int(d.Len-strip) && !ipLengthOK(f) {
		// Malformed input, not a descriptor fault: counted and dropped,
		// no evidence.
		c.counts[IPLength].Add(1)
		s.rec.RecordAt(k.now, flightrec.Drop, d.Addr, d.Len, uint32(k.batch), uint32(IPLength))
		return engine.Free
	}
	if cls == noClass {
		return engine.Keep
	}
	// The chunk was this socket's next FILL entry: it is provably ours
	// and idle now, so only the packet is dropped.
	return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Free)
}

// rxGarbage handles an RX entry that names no usable chunk. Whether the
// kernel consumed a FILL entry for it is unknown: owed defers the question
// to the next good descriptor.
func (k *Checker) rxGarbage(s *sock, d xsk.Desc, slot uint32, cls Class, detail string) engine.Disposition {
	s.owed++
	exp, _ := s.front()
	return k.rxViolation(s, d, slot, cls, uint64(exp)*k.c.fs, d.Addr, detail, engine.Quarantine)
}

func (k *Checker) rxViolation(s *sock, d xsk.Desc, slot uint32, cls Class, exp, got uint64, detail string, disp engine.Disposition) engine.Disposition {
	v := &Violation{Class: cls, Ring: xsk.KindRx, Slot: slot, Addr: d.Addr, Len: d.Len, Expected: exp, Got: got, Detail: detail}
	k.violate(s, v, k.frameAt(d.Addr, d.Len))
	if disp == engine.Quarantine {
		s.rec.RecordAt(k.now, flightrec.Quarantine, d.Addr, d.Len, uint32(k.batch), uint32(cls))
	} else {
		s.rec.RecordAt(k.now, flightrec.Drop, d.Addr, d.Len, uint32(k.batch), uint32(cls))
	}
	return disp
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

// record finds the XDP program's record of RX descriptor d, whose address
// lies at offset off in a chunk of the UMEM, and how many bytes of it
// precede the frame (see xdpprog.Carrier.Locate). It reads nothing beyond
// the chunk. A record carried in front of the frame while the carrier is
// the metadata area means the driver refused metadata at run time and the
// program fell back: logged once per socket (the engine counts frames).
func (k *Checker) record(s *sock, d xsk.Desc, off uint64) (xdpprog.Meta, uint32, bool) {
	c := k.c.cfg.Carrier
	n := uint32(min(uint64(d.Len), k.c.fs-off))
	m, strip, ok := c.Locate(k.area, d.Addr, n, off)
	if strip > 0 && c != xdpprog.CarrierHead && !s.metaFallback {
		s.metaFallback = true
		k.c.log.Warn("driver refused XDP metadata at run time: the XDP program carries its record in front of the frame instead (counted in meta_fallback)",
			"iface", s.iface, "queue", s.queue)
	}
	return m, strip, ok
}

// violate fills in the common fields, records the event and reports.
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
