package flow

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Timeouts are the idle timeouts per state (nf_conntrack_tcp_timeout_*).
// Zero fields take conntrack's default. Resolution is one second.
type Timeouts struct {
	SynSent, SynRecv, Established, FinWait, CloseWait time.Duration
	LastAck, TimeWait, Close, SynSent2                time.Duration
	// Unacknowledged caps the timeout while either side has data in flight
	// that the other has not acknowledged, and of a picked-up flow that has
	// not seen its reply yet (nf_conntrack_tcp_timeout_unacknowledged).
	Unacknowledged time.Duration
}

// DefaultTimeouts returns conntrack's defaults.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		SynSent:        120 * time.Second,
		SynRecv:        60 * time.Second,
		Established:    5 * 24 * time.Hour,
		FinWait:        120 * time.Second,
		CloseWait:      60 * time.Second,
		LastAck:        30 * time.Second,
		TimeWait:       120 * time.Second,
		Close:          10 * time.Second,
		SynSent2:       120 * time.Second,
		Unacknowledged: 300 * time.Second,
	}
}

// Config configures a Table.
type Config struct {
	// Capacity is the number of flows the table is sized for. Memory is
	// allocated once, in New.
	Capacity int
	// Timeouts per state; zero fields take conntrack's defaults.
	Timeouts Timeouts
	// Loose always allows mid-stream pickup (nf_conntrack_tcp_loose=1).
	Loose bool
	// PickupUntil allows pickup while now < PickupUntil, in the clock passed
	// to Track: the grace period after a restart. See SetPickupUntil.
	PickupUntil uint32
}

// MaxCapacity bounds Config.Capacity.
const MaxCapacity = 1 << 30

const (
	// shardTarget is the number of flows a shard is sized for: 16K entries
	// keep the 16-bit entry index in an index slot and give 64 locks at
	// 1M flows.
	shardTarget = 1 << 14
	// evictScan is how many entries a full shard examines for a victim.
	evictScan = 16
	// maxScale is the largest window scale RFC 7323 allows.
	maxScale = 14
)

// window is the per-direction tracking data of tcp_in_window
// (struct ip_ct_tcp_state without flags and scale).
type window struct {
	end    uint32 // highest seq+len sent (td_end)
	maxend uint32 // highest ack+win seen from the peer (td_maxend)
	maxwin uint32 // largest (scaled) window advertised (td_maxwin)
	maxack uint32 // highest ack sent (td_maxack)
}

// Per-direction flags (IP_CT_TCP_FLAG_*).
const (
	tfWScale    uint8 = 1 << iota // window scale option seen
	tfSACK                        // SACK permitted
	tfFin                         // this side sent a FIN (in window)
	tfLiberal                     // accept out-of-window segments (BE_LIBERAL)
	tfUnack                       // data sent but not acknowledged yet
	tfMaxAckSet                   // maxack is valid
)

// Per-flow flags.
const (
	efOrigLo       uint8 = 1 << iota // original sender is the key's lo endpoint
	efOrigOutbound                   // original direction is Outbound
	efSeenReply                      // IPS_SEEN_REPLY
	efAssured                        // IPS_ASSURED
	efPickedUp                       // created mid-stream
	efSimOpen                        // IP_CT_TCP_SIMULTANEOUS_OPEN
	efChallenge                      // IP_CT_EXP_CHALLENGE_ACK
	efOffloaded                      // IPS_OFFLOAD: the kernel fast path carries it
)

// entry is one flow. It is 104 bytes (asserted in a test); the index adds
// 8 bytes per flow at its 50% load.
//
// The first 44 bytes are what a lock-free reader (Lookup, LookupBatch)
// reads: the key and sd, one word holding the deadline, the state and a
// 16-bit sequence number. Writers hold the shard lock and store these
// fields with sync/atomic; the sequence number grows each time the entry
// is freed, so a reader that sees the same sd before and after reading the
// key knows the key belongs to the flow whose state it read (a seqlock
// whose "write in progress" mark is StateNone). The rest (tcpState) is
// touched only under the lock.
type entry struct {
	addr  [4]uint64 // key
	sd    uint64    // deadline | state<<32 | lastOpt<<40 | seq<<48
	ports uint32    // key
	tcpState
}

// sd layout. deadline is the expiry time, or the free-list link while the
// entry is free. lastOpt holds the options of the last ignored SYN:
// scale | tfWScale/tfSACK <<4.
const (
	sdState   = 32
	sdLastOpt = 40
	sdSeq     = 48
)

// tcpState is the part of an entry only the lock holder reads.
type tcpState struct {
	td      [2]window // [original, reply]
	lastEnd uint32    // last_end
	created uint32
	pkts    [2]uint32
	seqAdj  uint32
	lastWin uint16
	flags   uint8
	tflags  [2]uint8
	tscale  [2]uint8
	last    uint8 // last_index | last_dir<<3
}

// Accessors of sd. Reads are plain: only the lock holder calls them, and
// every store to sd is made under the lock.
func (e *entry) deadline() uint32 { return uint32(e.sd) }
func (e *entry) state() State     { return State(e.sd >> sdState) }
func (e *entry) lastOpt() uint8   { return uint8(e.sd >> sdLastOpt) }

func (e *entry) setDeadline(d uint32) {
	if w := e.sd&^0xffffffff | uint64(d); w != e.sd {
		atomic.StoreUint64(&e.sd, w)
	}
}

func (e *entry) setState(s State) {
	atomic.StoreUint64(&e.sd, e.sd&^(0xff<<sdState)|uint64(s)<<sdState)
}

func (e *entry) setLastOpt(o uint8) {
	atomic.StoreUint64(&e.sd, e.sd&^(0xff<<sdLastOpt)|uint64(o)<<sdLastOpt)
}

// free marks the entry free with next as its free-list link, bumping the
// sequence number.
func (e *entry) free(next uint32) {
	seq := (e.sd>>sdSeq + 1) << sdSeq
	atomic.StoreUint64(&e.sd, seq|uint64(next))
	e.tcpState = tcpState{}
}

// setKey stores a new key in a free entry.
func (e *entry) setKey(k *key) {
	for i, w := range k.addr {
		atomic.StoreUint64(&e.addr[i], w)
	}
	atomic.StoreUint32(&e.ports, k.ports)
}

// sdFields splits an sd word read by a lock-free reader.
func sdFields(w uint64) (State, uint32) { return State(w >> sdState), uint32(w) }

func (e *entry) lastIndex() uint8 { return e.last & 7 }
func (e *entry) lastDir() uint8   { return e.last >> 3 }
func (e *entry) setLast(class, dir uint8) {
	e.last = class | dir<<3
}
func (e *entry) key() key { return key{addr: e.addr, ports: e.ports} }

// Table is the flow table. All methods are safe for concurrent use.
type Table struct {
	shards      []shard
	shift       uint8 // shard = hash >> shift
	h           hasher
	tmo         [NumStates]uint32
	tmoUnack    uint32
	loose       bool
	pickupUntil atomic.Uint32
	capacity    int // entries allocated
	requested   int
	memBytes    int // bulk memory (entries and indexes)

	gcMu    sync.Mutex
	gcShard int
	gcPos   int
}

// New allocates a table for cfg.Capacity flows.
func New(cfg Config) (*Table, error) {
	if cfg.Capacity <= 0 || cfg.Capacity > MaxCapacity {
		return nil, fmt.Errorf("flow: capacity %d out of range [1, %d]", cfg.Capacity, MaxCapacity)
	}
	t := &Table{loose: cfg.Loose, requested: cfg.Capacity}
	if err := t.setTimeouts(cfg.Timeouts); err != nil {
		return nil, err
	}
	t.pickupUntil.Store(cfg.PickupUntil)
	for i := range t.h.s {
		t.h.s[i] = rand.Uint64()
	}

	// Shard count: a power of two so the top hash bits pick the shard.
	ns := 1
	for ns*shardTarget < cfg.Capacity {
		ns <<= 1
	}
	t.shift = uint8(64 - bits.TrailingZeros(uint(ns)))
	per := (cfg.Capacity + ns - 1) / ns
	if ns > 1 {
		// A keyed hash spreads flows binomially; 4σ of headroom makes a
		// shard fill up before the table does with probability < 1e-3.
		per += int(4*math.Sqrt(float64(per))) + 1
	}
	t.shards = make([]shard, ns)
	shardBytes := (per*int(unsafe.Sizeof(entry{}))+63)&^63 + (2*per*4+63)&^63
	mem := newArena(ns * shardBytes)
	off := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.entries = carve[entry](mem, &off, per)
		sh.index = carve[uint32](mem, &off, 2*per)
		for j := range sh.entries {
			sh.entries[j].sd = uint64(j + 2)
		}
		sh.entries[per-1].sd = 0
		sh.free = 1
	}
	t.capacity = ns * per
	t.memBytes = len(mem.buf)
	mem.release(t)
	return t, nil
}

func (t *Table) setTimeouts(to Timeouts) error {
	d := DefaultTimeouts()
	sec := func(v, def time.Duration) (uint32, error) {
		if v == 0 {
			v = def
		}
		if v < time.Second || v > 365*24*time.Hour {
			return 0, errors.New("flow: timeout " + v.String() + " out of range [1s, 365d]")
		}
		return uint32(v / time.Second), nil
	}
	var err error
	pairs := []struct {
		dst    *uint32
		v, def time.Duration
	}{
		{&t.tmo[StateSynSent], to.SynSent, d.SynSent},
		{&t.tmo[StateSynRecv], to.SynRecv, d.SynRecv},
		{&t.tmo[StateEstablished], to.Established, d.Established},
		{&t.tmo[StateFinWait], to.FinWait, d.FinWait},
		{&t.tmo[StateCloseWait], to.CloseWait, d.CloseWait},
		{&t.tmo[StateLastAck], to.LastAck, d.LastAck},
		{&t.tmo[StateTimeWait], to.TimeWait, d.TimeWait},
		{&t.tmo[StateClose], to.Close, d.Close},
		{&t.tmo[StateSynSent2], to.SynSent2, d.SynSent2},
		{&t.tmoUnack, to.Unacknowledged, d.Unacknowledged},
	}
	for _, p := range pairs {
		if *p.dst, err = sec(p.v, p.def); err != nil {
			return err
		}
	}
	return nil
}

// SetPickupUntil opens (or, with 0, closes) the pickup grace period: until
// now reaches until, an ACK with no flow creates a liberal ESTABLISHED flow.
func (t *Table) SetPickupUntil(until uint32) { t.pickupUntil.Store(until) }

func (t *Table) pickupAllowed(now uint32) bool {
	return t.loose || before(now, t.pickupUntil.Load())
}

// expired compares modulo 2^32 so a coarse clock may wrap.
func expired(deadline, now uint32) bool { return int32(now-deadline) >= 0 }

func (sh *shard) setState(e *entry, s State) {
	if e.state() == s {
		return // most segments: spare the atomic store
	}
	sh.st.states[e.state()]--
	sh.st.states[s]++
	e.setState(s)
}

// Track runs one segment through the tracker and returns the verdict. It
// creates a flow on a valid SYN from either side (or on an ACK while pickup
// is allowed), advances the state machine and checks the window. It does
// not allocate.
func (t *Table) Track(s *Segment, now uint32) Verdict {
	f := s.Flags & flagMask
	if !validFlags[f] {
		return Verdict{Action: Drop, Reason: ReasonInvalidFlags}
	}
	class := flagClass(f)
	var k key
	senderLo := k.set(s)
	h := t.h.hash(&k)
	sh := t.shardOf(h)
	sh.mu.Lock()
	v := t.trackLocked(sh, s, &k, h, senderLo, class, now)
	sh.mu.Unlock()
	return v
}

func (t *Table) trackLocked(sh *shard, s *Segment, k *key, h uint64, senderLo bool, class uint8, now uint32) Verdict {
	pos, e := sh.find(k, h)
	if e != nil && expired(e.deadline(), now) {
		sh.remove(t, pos)
		sh.st.expired++
		pos, e = sh.find(k, h)
	}
	if e == nil {
		return t.open(sh, pos, s, k, h, senderLo, class, now)
	}
	var dir uint8
	if senderLo != (e.flags&efOrigLo != 0) {
		dir = 1
	}
	// The reply must come from the other interface: a segment that matches
	// the flow but enters on the wrong side has a spoofed source.
	if (s.Dir == Outbound) != ((e.flags&efOrigOutbound != 0) != (dir == 1)) {
		return Verdict{Action: Drop, Reason: ReasonWrongDirection, State: e.state(), Reply: dir == 1}
	}
	e.pkts[dir]++
	v, out := t.packet(sh, e, s, dir, class, now)
	switch out {
	case outKill:
		sh.remove(t, pos)
		sh.st.reset++
	case outReopen:
		sh.remove(t, pos)
		pos, _ = sh.find(k, h)
		v = t.open(sh, pos, s, k, h, senderLo, class, now)
	}
	return v
}

// open creates a flow for a segment that matched none (tcp_new).
func (t *Table) open(sh *shard, pos uint32, s *Segment, k *key, h uint64, senderLo bool, class uint8, now uint32) Verdict {
	pickup := false
	switch class {
	case classSYN:
	case classACK:
		if !t.pickupAllowed(now) {
			return Verdict{Action: Drop, Reason: ReasonNotFound}
		}
		pickup = true
	default:
		return Verdict{Action: Drop, Reason: ReasonNotFound}
	}
	e := t.insert(sh, pos, k, h, now)
	if e == nil {
		return Verdict{Action: Drop, Reason: ReasonTableFull}
	}
	e.setState(StateNone)
	sh.st.states[StateNone]++
	e.created = now
	e.pkts[0] = 1
	if senderLo {
		e.flags |= efOrigLo
	}
	if s.Dir == Outbound {
		e.flags |= efOrigOutbound
	}
	e.setLast(classNone, 0)
	o := &e.td[0]
	end := segEnd(s)
	if !pickup {
		o.end, o.maxend = end, end
		o.maxwin = max(uint32(s.Window), 1)
		e.tflags[0], e.tscale[0] = synOptions(s)
	} else {
		// Mid-stream: history is lost. As tcp_new with tcp_loose, assume
		// SACK and be liberal; unlike it, seed the receiver's end from the
		// ACK so bounds III/IV hold for the creator's next segments, and
		// assume the largest window scale so that, once both directions
		// are seen and liberal mode ends, windows are over- rather than
		// under-estimated (the real scale was in SYNs we never saw).
		e.flags |= efPickedUp
		e.tscale = [2]uint8{maxScale, maxScale}
		e.tflags = [2]uint8{tfWScale | tfSACK | tfLiberal, tfWScale | tfSACK | tfLiberal}
		o.end = end
		o.maxwin = max(uint32(s.Window)<<maxScale, 1)
		o.maxend = end + o.maxwin
		r := &e.td[1]
		r.end, r.maxend = s.Ack, s.Ack
	}
	v, out := t.packet(sh, e, s, 0, class, now)
	v.New = true
	if v.Action == Drop || out != outKeep {
		pos, _ := sh.find(k, h)
		sh.remove(t, pos)
		v.New = false
	}
	return v
}

// synOptions is tcp_options: the scale is capped at 14 (RFC 7323 §2.3).
func synOptions(s *Segment) (flags, scale uint8) {
	if s.WScale >= 0 {
		flags |= tfWScale
		scale = uint8(min(s.WScale, maxScale))
	}
	if s.SACKPerm {
		flags |= tfSACK
	}
	return flags, scale
}

// Open describes a connection whose handshake a SYN proxy completed or is
// completing: the client solved a cookie, so the table never saw its SYN.
type Open struct {
	// State is StateSynSent (the proxy's SYN to the server is in flight;
	// Track the server's SYN-ACK normally) or StateEstablished (both ISNs
	// known).
	State        State
	ClientISN    uint32
	ClientWScale int8 // -1 when absent
	ClientWindow uint16
	SACKPerm     bool
	ServerISN    uint32 // StateEstablished only
	ServerWScale int8   // StateEstablished only
	ServerWindow uint16 // StateEstablished only
	// SeqAdjust is the server's ISN minus the cookie ISN (see SetSeqAdjust).
	SeqAdjust uint32
}

// Insert creates a flow for a SYN proxy. s is the client's segment (the
// cookie ACK); its sender becomes the original direction. If the flow
// already exists it is left alone and returned with New unset.
func (t *Table) Insert(s *Segment, o Open, now uint32) Verdict {
	if o.State != StateSynSent && o.State != StateEstablished {
		return Verdict{Action: Drop, Reason: ReasonUnexpected}
	}
	k, senderLo := makeKey(s)
	h := t.h.hash(&k)
	sh := t.shardOf(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	pos, e := sh.find(&k, h)
	if e != nil && expired(e.deadline(), now) {
		sh.remove(t, pos)
		sh.st.expired++
		pos, e = sh.find(&k, h)
	}
	if e != nil {
		return Verdict{State: e.state(), SeqAdjust: e.seqAdj, Reply: senderLo != (e.flags&efOrigLo != 0)}
	}
	if e = t.insert(sh, pos, &k, h, now); e == nil {
		return Verdict{Action: Drop, Reason: ReasonTableFull}
	}
	e.created = now
	e.seqAdj = o.SeqAdjust
	if senderLo {
		e.flags |= efOrigLo
	}
	if s.Dir == Outbound {
		e.flags |= efOrigOutbound
	}
	c := &e.td[0]
	c.end = o.ClientISN + 1
	c.maxend = c.end
	c.maxwin = max(uint32(o.ClientWindow), 1)
	e.tflags[0], e.tscale[0] = synOptions(&Segment{WScale: o.ClientWScale, SACKPerm: o.SACKPerm})
	e.setLast(classSYN, 0)
	e.lastEnd = c.end
	if o.State == StateEstablished {
		e.tflags[1], e.tscale[1] = synOptions(&Segment{WScale: o.ServerWScale, SACKPerm: o.SACKPerm})
		if e.tflags[0]&e.tflags[1]&tfWScale == 0 {
			e.tscale = [2]uint8{}
		}
		sv := &e.td[1]
		sv.end = o.ServerISN + 1
		cw := max(uint32(o.ClientWindow)<<e.tscale[0], 1)
		sw := max(uint32(o.ServerWindow)<<e.tscale[1], 1)
		c.maxwin, sv.maxwin = cw, sw
		c.maxend, sv.maxend = c.end+sw, sv.end+cw
		c.maxack, sv.maxack = sv.end, c.end
		e.tflags[0] |= tfMaxAckSet
		e.tflags[1] |= tfMaxAckSet
		e.flags |= efSeenReply | efAssured
		e.setLast(classACK, 0)
	}
	e.setState(o.State)
	sh.st.states[o.State]++
	e.setDeadline(now + t.tmo[o.State])
	return Verdict{State: e.state(), New: true, SeqAdjust: e.seqAdj}
}

// SetSeqAdjust stores the SYN-proxy sequence offset (server ISN minus cookie
// ISN) of the segment's flow. The table keeps the reply direction in the
// server's sequence space and adds the offset to original-direction ACKs
// before checking them, as tcp_in_window does with nf_ct_seq_offset; the
// caller rewrites the packets (original ack += delta, reply seq -= delta).
func (t *Table) SetSeqAdjust(s *Segment, delta uint32) bool {
	k, _ := makeKey(s)
	h := t.h.hash(&k)
	sh := t.shardOf(h)
	sh.mu.Lock()
	_, e := sh.find(&k, h)
	if e != nil {
		e.seqAdj = delta
	}
	sh.mu.Unlock()
	return e != nil
}

// Expire examines up to budget entry slots, continuing where the previous
// call stopped, and removes expired flows. It returns how many it removed.
// A housekeeping goroutine calls it periodically; the shard lock is held
// for at most 256 slots at a time.
func (t *Table) Expire(now uint32, budget int) int {
	t.gcMu.Lock()
	defer t.gcMu.Unlock()
	removed := 0
	for budget > 0 {
		sh := &t.shards[t.gcShard]
		n := min(budget, 256, len(sh.entries)-t.gcPos)
		sh.mu.Lock()
		for i := t.gcPos; i < t.gcPos+n; i++ {
			e := &sh.entries[i]
			if e.state() != StateNone && expired(e.deadline(), now) {
				sh.remove(t, sh.posOf(t, uint32(i)))
				sh.st.expired++
				removed++
			}
		}
		sh.mu.Unlock()
		budget -= n
		if t.gcPos += n; t.gcPos == len(sh.entries) {
			t.gcPos = 0
			t.gcShard = (t.gcShard + 1) % len(t.shards)
		}
	}
	return removed
}
