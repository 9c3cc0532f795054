package protect

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"golang.org/x/sys/unix"
)

// Options are the parts of an Inspector that a Reload does not change.
type Options struct {
	// Workers bounds the worker index Inspect accepts (default 64); the
	// daemon sizes it to the gate's queue count with SetWorkers.
	Workers int
	// Table is the flow table; nil: a new one of FlowCapacity flows with
	// conntrack's default timeouts and no pickup.
	Table        *flow.Table
	FlowCapacity int // default 1<<20
	// RetransmitCapacity sizes the retransmit action's table of dropped
	// first SYNs, allocated when a rule first uses the action (default
	// DefaultRetransmitCapacity; see retrans.go).
	RetransmitCapacity int
	// Logger receives the sampled drop lines and reload events (default
	// slog.Default()).
	Logger *slog.Logger
	// Clock returns monotonic nanoseconds; it is read once per batch.
	// Default: time since New. Tests inject a fake.
	Clock func() int64
}

const (
	defaultWorkers = 64
	maxWorkers     = 4096
	srcSlots       = 1 << 14 // per-source SYN meters
)

// Inspector is the TCP protection stage; it implements engine.Inspector.
type Inspector struct {
	rules   atomic.Pointer[ruleset]
	table   *flow.Table
	key     sipKey
	clock   func() int64
	log     *slog.Logger
	workers []workerState

	// lastChallenge is when a cookie SYN-ACK last left: cookie ACKs are
	// only looked for while cookies can still be valid, so scopes never
	// under SYN flood pay nothing for the SYN proxy.
	lastChallenge atomic.Int64
	// retrans holds recently dropped first SYNs (retrans.go), nil until a
	// rule uses the retransmit action.
	retrans    atomic.Pointer[retransTable]
	retransCap int
	// srcTat are per-source SYN meters, hashed by (rule, source); sources
	// that collide share one, which errs toward challenging.
	srcTat []atomic.Int64
	// passed are the sources that passed a challenge (passed.go).
	passed    []passedSlot
	passedAny atomic.Bool // some source ever passed: until then no SYN pays the lookup

	// first is the XDP first line, when the gate has one (SetFirstLine).
	first atomic.Pointer[firstLine]
	// fast is the kernel fast path, when the gate has one (SetFastPath).
	fast atomic.Pointer[fastPath]
	// clockBase is CLOCK_MONOTONIC at the clock's zero: the XDP program
	// computes cookie time from the same origin.
	clockBase uint64

	reloadMu  sync.Mutex
	ruleStats map[string]*ruleStats
	reloads   [2]atomic.Uint64 // ok, failed
	lastOK    atomic.Int64     // unix seconds of the last successful (re)load

	outOfRangeLogged atomic.Bool // see outOfRange
	// extras are the engine's workers' spare frames, by worker (UseExtra).
	extras []engine.Extra
}

// workerState is one worker's scratch and counters, padded apart so that
// workers never share a cache line.
type workerState struct {
	// pkt, seg and prep are the packet being inspected, its segment and
	// its prepared flow key: one of pkts, segs and preps, which hold a
	// chunk of the batch, parsed before any of it is inspected so that
	// the flow table's misses overlap (flow.Table.Prepare).
	pkt   *packet.Packet
	seg   *flow.Segment
	prep  *flow.Prepared
	perr  [chunk]error
	pkts  [chunk]packet.Packet
	segs  [chunk]flow.Segment
	preps [chunk]flow.Prepared
	c     counters
	// flows created in this batch, for the first line's flow map
	flows xdpprog.FlowBatch
	// flows offloaded and released in this batch, for the fast path
	fast xdpprog.FastBatch
	// extra is the worker's spare frames for this batch (UseExtra; nil
	// outside an engine)
	extra  engine.Extra
	quoted packet.Quoted // an ICMP error's invoking packet
	_      [64]byte
}

var (
	_ engine.Inspector = (*Inspector)(nil)
	_ engine.ExtraUser = (*Inspector)(nil)
)

// New validates cfg and builds an Inspector.
func New(cfg Config, opt Options) (*Inspector, error) {
	rs, err := compile(&cfg)
	if err != nil {
		return nil, err
	}
	if opt.Workers == 0 {
		opt.Workers = defaultWorkers
	}
	if opt.Workers < 0 || opt.Workers > maxWorkers {
		return nil, fmt.Errorf("protect: workers %d out of range [1, %d]", opt.Workers, maxWorkers)
	}
	i := &Inspector{
		table:      opt.Table,
		clock:      opt.Clock,
		log:        opt.Logger,
		workers:    make([]workerState, opt.Workers),
		retransCap: opt.RetransmitCapacity,
		srcTat:     make([]atomic.Int64, srcSlots),
		passed:     make([]passedSlot, passedSlots),
		ruleStats:  map[string]*ruleStats{},
	}
	if i.table == nil {
		c := opt.FlowCapacity
		if c == 0 {
			c = 1 << 20
		}
		if i.table, err = flow.New(flow.Config{Capacity: c}); err != nil {
			return nil, err
		}
	}
	if i.log == nil {
		i.log = slog.Default()
	}
	if i.retransCap <= 0 {
		i.retransCap = DefaultRetransmitCapacity
	}
	if i.clock == nil {
		// CLOCK_MONOTONIC, as bpf_ktime_get_ns: the XDP first line makes
		// cookies with the same time counter.
		base := monotonic()
		i.clockBase = uint64(base)
		i.clock = func() int64 { return monotonic() - base }
	}
	var kb [16]byte
	if _, err := crand.Read(kb[:]); err != nil {
		return nil, fmt.Errorf("protect: cookie key: %w", err)
	}
	i.key = sipKey{binary.LittleEndian.Uint64(kb[:8]), binary.LittleEndian.Uint64(kb[8:])}
	i.lastChallenge.Store(-1 << 62)
	i.needRetrans(rs)
	i.publish(rs)
	i.reloads[0].Add(1)
	return i, nil
}

// Table returns the flow table (for housekeeping and listings).
func (i *Inspector) Table() *flow.Table { return i.table }

// Now returns the flow table's clock (seconds), as Inspect uses it.
func (i *Inspector) Now() uint32 { return tableNow(i.clock()) }

func tableNow(ns int64) uint32 { return uint32(ns/1e9) + 1 }

// publish attaches persistent per-rule counters and swaps rs in.
func (i *Inspector) publish(rs *ruleset) {
	for _, r := range rs.rules {
		st := i.ruleStats[r.name]
		if st == nil {
			st = &ruleStats{}
			i.ruleStats[r.name] = st
		}
		r.stats = st
	}
	i.rules.Store(rs)
	i.lastOK.Store(time.Now().Unix())
}

// Reload validates cfg and swaps it in atomically. The flow table is not
// touched, so no flow is lost; a batch in progress finishes with the old
// rules. Thresholds restart from empty meters. On error the old rules stay.
func (i *Inspector) Reload(cfg Config) error {
	rs, err := compile(&cfg)
	i.reloadMu.Lock()
	defer i.reloadMu.Unlock()
	if err != nil {
		i.reloads[1].Add(1)
		return err
	}
	old := i.rules.Load()
	if !old.enabled && cfg.Enabled {
		// ATP's rollout advice: flows set up while the stage was off are
		// tracked (disabled still tracks), so nothing is lost here; say
		// so, since operators expect a risk.
		i.log.Info("protect: enabled", "rules", len(rs.rules))
	}
	i.needRetrans(rs)
	i.publish(rs)
	i.reloads[0].Add(1)
	if f := i.first.Load(); f != nil {
		// The maps change in place: the flow map and penalty box are
		// kept, so no flow is lost.
		if err := f.apply(i, rs); err != nil {
			i.log.Error("protect: first line not updated on reload", "err", err)
			f.errs.Add(1)
		}
	}
	if f := i.fast.Load(); f != nil {
		i.releaseFast(f)
	}
	return nil
}

// Expire runs the flow table's incremental expiry with the Inspector's
// clock; a housekeeping goroutine calls it periodically.
func (i *Inspector) Expire(budget int) int { return i.table.Expire(i.Now(), budget) }

// decision is what happened to one TCP segment, counted once.
type decision struct {
	reason           reason
	verdict, outcome verdict
	rule             *rule
}

// Inspect implements engine.Inspector.
func (i *Inspector) Inspect(worker int, from engine.Side, pkts []engine.Packet) {
	if uint(worker) >= uint(len(i.workers)) {
		i.outOfRange(worker, len(pkts)) // a wiring bug: counted and logged
		return
	}
	w := &i.workers[worker]
	w.extra = i.extraOf(worker)
	rs := i.rules.Load()
	now := i.clock()
	dir := flow.Inbound
	if from == engine.Inner {
		dir = flow.Outbound
	}
	for len(pkts) > 0 {
		n := min(len(pkts), chunk)
		i.prepare(w, dir, pkts[:n])
		for k := range n {
			w.pkt, w.seg, w.prep = &w.pkts[k], &w.segs[k], &w.preps[k]
			i.inspect(w, rs, dir, &pkts[k], w.perr[k], now)
		}
		pkts = pkts[n:]
	}
	if f := i.first.Load(); f != nil {
		// Before these frames leave: the flows they opened must be in
		// the first line's map when their next segments arrive.
		f.flush(&w.flows)
	}
	if f := i.fast.Load(); f != nil && w.fast.Len() > 0 {
		i.flushFast(f, &w.fast)
	}
}

// tracked notes a flow the tracker just created for the first line, and
// offers the flow to the fast path.
func (i *Inspector) tracked(w *workerState, v flow.Verdict) {
	if v.New {
		if f := i.first.Load(); f != nil {
			f.track(&w.flows, w.seg)
		}
	}
	if f := i.fast.Load(); f != nil {
		f.offer(i.table, w, v)
	}
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// inspect judges one packet, parsed by prepare into w.pkt (err is what
// parsing returned) with its segment in w.seg.
func (i *Inspector) inspect(w *workerState, rs *ruleset, dir flow.Dir, pk *engine.Packet, err error, now int64) {
	p := w.pkt
	if err != nil {
		// Parse returns packet.Error values only; a type assertion (not
		// errors.As) keeps this allocation-free.
		if pe, ok := err.(packet.Error); ok && pe < packet.NumErrors { //nolint:errorlint
			w.c.malformed[pe].inc()
		}
		if rs.enabled {
			pk.Verdict = engine.Drop
		}
		return
	}
	if p.IPVersion == 0 {
		w.c.bypass[bNonIP].inc()
		return
	}
	if p.Proto != packet.ProtoTCP {
		if p.IsICMPError() {
			i.icmpError(w, dir, pk, now)
		}
		w.c.bypass[bNonTCP].inc()
		return
	}
	server, client := p.Dst, p.Src
	if dir == flow.Outbound {
		server, client = p.Src, p.Dst
	}
	if !rs.protects(server) {
		w.c.bypass[bUnprotected].inc()
		return
	}
	var d decision
	if dir == flow.Inbound {
		d = i.inbound(w, rs, pk, client, server, now)
	} else {
		d = i.outbound(w, rs, pk, now)
	}
	if !rs.enabled && d.outcome != vPass && d.reason != rProxyPending && d.reason != rProxyEstablished {
		// Switched off: decide nothing (proxy bookkeeping still runs so
		// connections made while on keep working).
		d.outcome = vPass
		pk.Verdict = engine.Forward
	}
	w.c.decisions[dir][d.reason][d.verdict][d.outcome].inc()
	if d.rule != nil {
		d.rule.stats.n[d.verdict][d.outcome].Add(1)
	}
	if d.verdict != vPass && d.outcome != vChallenge && !rs.logQuiet && rs.logLimit.allow(now) {
		i.logDecision(dir, &d, p)
	}
}

func (i *Inspector) logDecision(dir flow.Dir, d *decision, p *packet.Packet) {
	rule := ""
	if d.rule != nil {
		rule = d.rule.name
	}
	i.log.LogAttrs(context.Background(), slog.LevelInfo, "protect: drop",
		slog.String("dir", dir.String()),
		slog.String("reason", d.reason.String()),
		slog.String("protection", d.reason.protection()),
		slog.String("verdict", d.verdict.String()),
		slog.String("outcome", d.outcome.String()),
		slog.String("rule", rule),
		slog.String("src", netip.AddrPortFrom(p.Src, p.SrcPort).String()),
		slog.String("dst", netip.AddrPortFrom(p.Dst, p.DstPort).String()),
		slog.Int("flags", int(p.TCP.Flags)),
	)
}

const synAckMask = packet.SYN | packet.ACK | packet.RST | packet.FIN

func (i *Inspector) inbound(w *workerState, rs *ruleset, pk *engine.Packet, client, server netip.Addr, now int64) decision {
	p := w.pkt
	if rs.blocked(client) {
		pk.Verdict = engine.Drop
		return decision{reason: rBlocklist, verdict: vDrop, outcome: vDrop}
	}
	r := rs.match(server)
	if p.L4Off < 0 || p.Fragment {
		// No trackable header: a later fragment, or a first fragment whose
		// payload we cannot account for. Legitimate TCP sets DF, so treat
		// it as out of state rather than a way around the tracker.
		if rs.allowed(client) {
			return decision{reason: rAllowlist}
		}
		return i.outOfState(pk, rs, r, rFragment, now)
	}
	sec := tableNow(now)
	allowed := rs.allowed(client)
	flags := p.TCP.Flags & synAckMask
	if r != nil && !allowed && rs.enabled {
		if flags == packet.SYN && r.synMode != ModeDisabled {
			if d, done := i.synFlood(w, rs, r, pk, now); done {
				return d
			} else if d.reason != rOK {
				// Monitor (or admitted retransmission): track, count the
				// SYN decision.
				v := i.table.TrackPrepared(w.seg, w.prep, sec)
				i.tracked(w, v)
				if v.Action == flow.Drop && d.reason == rRetransmitPassed {
					return i.trackDrop(w, rs, r, pk, v, now)
				}
				return d
			}
		}
	}
	if flags == packet.ACK && p.PayloadLen == 0 && now-i.lastChallenge.Load() <= (cookieMaxAge+1)*cookieTick {
		if d, done := i.cookieACK(w, rs, r, pk, now); done {
			return d
		}
	}
	v := i.table.TrackPrepared(w.seg, w.prep, sec)
	i.tracked(w, v)
	if v.SeqAdjust != 0 && !v.Reply {
		if v.State == flow.StateSynSent {
			// The server has not answered the proxy's SYN yet, so the
			// delta is unknown: the SYN may have been lost, so send it
			// again; the client retransmits its data later.
			if i.resendSyn(w, pk, v.SeqAdjust, now) {
				return decision{reason: rProxySynResent, rule: r}
			}
			pk.Verdict = engine.Drop
			return decision{reason: rProxyPending, verdict: vDrop, outcome: vDrop, rule: r}
		}
		pk.CompleteChecksum() // before any rewrite (engine.Packet)
		translate(pk.Data, p, true, v.SeqAdjust)
	}
	if v.Action == flow.Pass {
		return decision{reason: reason(v.Reason), rule: r}
	}
	if allowed {
		return decision{reason: rAllowlist}
	}
	return i.trackDrop(w, rs, r, pk, v, now)
}

// trackDrop handles a tracker Drop on an inbound segment.
func (i *Inspector) trackDrop(w *workerState, rs *ruleset, r *rule, pk *engine.Packet, v flow.Verdict, now int64) decision {
	if v.Reason == flow.ReasonTableFull {
		return i.tableFull(w, rs, r, pk, now)
	}
	if v.Reason == flow.ReasonNotFound && w.seg.Flags&synAckMask == flow.FlagACK && w.seg.PayloadLen == 0 &&
		i.lastChallenge.Load() > now-(cookieMaxAge+1)*cookieTick {
		w.c.cookies[cInvalid].inc()
	}
	return i.outOfState(pk, rs, r, reason(v.Reason), now)
}

// outOfState applies the scope's out-of-state rule to an inbound segment
// the tracker rejected.
func (i *Inspector) outOfState(pk *engine.Packet, rs *ruleset, r *rule, why reason, now int64) decision {
	d := decision{reason: why, rule: r}
	if r == nil || r.oosMode == ModeDisabled || !rs.enabled {
		return d
	}
	if !r.oos.over(now) {
		return d // tolerated: below threshold
	}
	d.verdict = vDrop
	if r.oosMode == ModeMitigate {
		d.outcome = vDrop
		pk.Verdict = engine.Drop
	}
	return d
}

// outbound tracks a segment from the protected side. Out-of-state rules
// never drop it: the attacker is on the Internet side and cannot inject
// here, and dropping a server's segments because our state is stale
// (restart, eviction, asymmetric pickup) only hurts legitimate users. The
// inbound half of the same flow is where a spoofed or stale segment is
// judged.
func (i *Inspector) outbound(w *workerState, rs *ruleset, pk *engine.Packet, now int64) decision {
	p := w.pkt
	if p.L4Off < 0 {
		return decision{reason: rFragment}
	}
	v := i.table.TrackPrepared(w.seg, w.prep, tableNow(now))
	i.tracked(w, v)
	if v.SeqAdjust != 0 && v.Reply {
		if p.TCP.Flags&synAckMask == packet.SYN|packet.ACK {
			if d, done := i.serverSynAck(w, rs, pk, v, now); done {
				return d
			}
		}
		pk.CompleteChecksum()
		translate(pk.Data, p, false, v.SeqAdjust)
	}
	return decision{reason: reason(v.Reason)}
}
