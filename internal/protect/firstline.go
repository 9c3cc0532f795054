package protect

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// FirstLineConfig switches the in-kernel first line's stages (package
// xdpprog): the XDP program drops or answers what the Inspector's
// decisions say, so that traffic already judged never costs an AF_XDP round
// trip. Every stage is on by default when protection is enabled.
//
//	first_line:
//	  mode: mitigate        # mitigate | monitor (count only) | disabled
//	  allowlist: true
//	  blocklist: true
//	  penalty_box: true     # sources over their per-source SYN threshold
//	  out_of_state: true    # untracked non-SYN TCP while a scope's meter is over
//	  syn_cookies: true     # cookie SYN-ACKs while a scope is challenged
//	  penalty: 60s          # how long a source stays in the box
//	  hold: 2s              # how long a scope stays flagged after its attack
//	  user_space_rate: 20000 # where XDP_TX fails: SYNs/s passed up to be answered
type FirstLineConfig struct {
	Mode       Mode          `yaml:"mode"`
	Allowlist  *bool         `yaml:"allowlist"`
	Blocklist  *bool         `yaml:"blocklist"`
	PenaltyBox *bool         `yaml:"penalty_box"`
	OutOfState *bool         `yaml:"out_of_state"`
	SynCookies *bool         `yaml:"syn_cookies"`
	Penalty    time.Duration `yaml:"penalty"`
	Hold       time.Duration `yaml:"hold"`
	// UserSpaceRate bounds, where XDP_TX fails (the cookie stage answers
	// from user space), the SYNs per second XDP passes up to the proxy;
	// the rest of the challenge budget is dropped in XDP (default 20000).
	// A copy-mode worker spends about 4 µs answering a SYN, so the full
	// budget (challenge_rate) would take the whole core from the traffic
	// it forwards; sources that passed a challenge are not counted
	// against it.
	UserSpaceRate uint32 `yaml:"user_space_rate"`
}

const (
	defaultPenalty = 60 * time.Second
	defaultHold    = 2 * time.Second
	// defaultUserSpaceRate: about 8% of a copy-mode worker's core.
	defaultUserSpaceRate = 20000
	// sweepEvery is how often flows gone from the table leave the map.
	sweepEvery = 10 * time.Second
	// firstLineTick is the scope controller's period.
	firstLineTick = 100 * time.Millisecond
)

// stages returns the stages on and in monitor mode.
func (c FirstLineConfig) stages() (on, monitor xdpprog.Stage) {
	if c.Mode == ModeDisabled {
		return 0, 0
	}
	for _, s := range []struct {
		b     *bool
		stage xdpprog.Stage
	}{{c.Allowlist, xdpprog.StageAllow}, {c.Blocklist, xdpprog.StageBlock}, {c.PenaltyBox, xdpprog.StagePenalty},
		{c.OutOfState, xdpprog.StageOutOfState}, {c.SynCookies, xdpprog.StageCookie}} {
		if s.b == nil || *s.b {
			on |= s.stage
		}
	}
	if c.Mode == ModeMonitor {
		monitor = on
	}
	return on, monitor
}

// firstLine is the Inspector's side of the XDP first line.
type firstLine struct {
	fl   *xdpprog.FirstLine
	base uint64 // CLOCK_MONOTONIC at the Inspector clock's zero
	// penalty and hold (ns) change at a reload, under reloadMu, while
	// workers (penalize) and the controller (control) read them.
	penalty atomic.Int64
	hold    atomic.Int64
	// penalized[h] is until when (Inspector clock) the source hashed to h
	// was last put in the box: each source costs one map update per
	// penalty, not one per SYN.
	penalized []atomic.Int64
	// penaltyOn: a source was put in the box, so the program looks it up
	// (until then every frame is spared that lookup). listsDirty: that, or
	// the first passed source (Inspector.passedAny), changed what the
	// program must look up; the controller reconfigures it at its next
	// tick, so that no worker waits for reloadMu on its packet path.
	penaltyOn  atomic.Bool
	listsDirty atomic.Bool
	// lookups are the source lists the program's configuration says it
	// looks up (FirstLineStats.Lookups).
	lookups atomic.Pointer[[]string]

	// txErrors reads the outer driver's XDP_TX failures (nil: unknown).
	txErrors               func() (uint64, bool)
	lastTxErr, lastCookies uint64
	// noTx: XDP_TX does not work on this interface; SYNs are answered
	// from user space, and the cookie stage only drops those over the
	// challenge budget (xdpprog.FirstLineConfig.CookieInUserSpace).
	noTx atomic.Bool

	mu     sync.Mutex
	scopes map[netip.Prefix]*scopeState
	errs   atomic.Uint64
	flowsN atomic.Int64 // flows in the map after the last sweep
}

// scopeState is the controller's memory of one scope.
type scopeState struct {
	flags     uint32
	last      xdpprog.ScopeCounts
	oosUntil  int64 // flagged out of state until (Inspector clock)
	synUntil  int64
	lastCheck int64
}

// SetFirstLine hands the Inspector the XDP program's first line: from now
// on its rules, lists and flows are mirrored there, and the scopes under
// attack are flagged. Call RunFirstLine to keep the flags and the flow map
// current. fl may be nil (no first line).
//
// txErrors, when set, reads the outer driver's XDP_TX failure count
// (gate.Gate.XDPTxErrors): if cookie SYN-ACKs sent with XDP_TX fail, the
// cookie stage turns itself off, says why once, and the user-space proxy
// answers instead.
func (i *Inspector) SetFirstLine(fl *xdpprog.FirstLine, txErrors func() (uint64, bool)) error {
	if fl == nil {
		return nil
	}
	f := &firstLine{fl: fl, base: i.clockBase, txErrors: txErrors,
		penalized: make([]atomic.Int64, srcSlots), scopes: map[netip.Prefix]*scopeState{}}
	i.reloadMu.Lock()
	defer i.reloadMu.Unlock()
	if err := f.apply(i, i.rules.Load()); err != nil {
		return err
	}
	i.first.Store(f)
	return nil
}

// apply mirrors a ruleset: stages and cookie parameters, the lists, and the
// rule scopes (their flags kept).
func (f *firstLine) apply(i *Inspector, rs *ruleset) error {
	f.penalty.Store(int64(rs.firstLine.Penalty))
	f.hold.Store(int64(rs.firstLine.Hold))
	if err := f.configure(f.config(i, rs)); err != nil {
		return err
	}
	set := func(ps []netip.Prefix) map[netip.Prefix]uint32 {
		m := map[netip.Prefix]uint32{}
		for _, p := range ps {
			m[p] = 1
		}
		return m
	}
	if err := f.fl.Replace(xdpprog.Allowlist, set(rs.allowlist)); err != nil {
		return err
	}
	if err := f.fl.Replace(xdpprog.Blocklist, set(rs.blocklist)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[netip.Prefix]uint32{}
	scopes := map[netip.Prefix]*scopeState{}
	for _, r := range rs.rules {
		st := f.scopes[r.scope]
		if st == nil {
			st = &scopeState{}
		}
		st.flags = scopeFlags(r, st.flags)
		scopes[r.scope] = st
		want[r.scope] = st.flags
	}
	f.scopes = scopes
	return f.fl.Replace(xdpprog.Scopes, want)
}

// config is the program's configuration for rs. The list bits go with
// it: a list is looked up only while it has entries. The allowlist's and
// blocklist's are set before their entries go in and cleared before they
// leave; the penalty box's and the passed sources' are set within a
// controller tick of the first entry (until then user space acts on
// those sources, as it always does).
func (f *firstLine) config(i *Inspector, rs *ruleset) xdpprog.FirstLineConfig {
	on, mon := f.stages(rs)
	c := xdpprog.FirstLineConfig{Stages: on, Monitor: mon, Key0: i.key.k0, Key1: i.key.k1, ClockBase: f.base,
		MSS4: rs.proxy.mss, MSS6: rs.proxy.mss - 20, Window: rs.proxy.window, WScale: rs.proxy.wscale, SACK: rs.proxy.sack,
		// The challenge limiter's own GCRA parameters: XDP and user space
		// spend the budget at the same rate and burst.
		ChallengeInterval: uint64(rs.challenge.r.interval), ChallengeTolerance: uint64(rs.challenge.r.tolerance),
		CookieInUserSpace: f.noTx.Load(),
		HasAllow:          len(rs.allowlist) > 0, HasBlock: len(rs.blocklist) > 0, HasPenalty: f.penaltyOn.Load(),
		HasPassed: i.passedAny.Load()}
	if rs.passedTTL > 0 {
		c.PassedInterval, c.PassedTolerance = uint64(rs.passed.interval), uint64(rs.passed.tolerance)
		c.PassedAllInterval, c.PassedAllTolerance = uint64(rs.passedAll.r.interval), uint64(rs.passedAll.r.tolerance)
	}
	if c.CookieInUserSpace {
		// The worker answers what XDP passes up: at most what it can
		// take beside its traffic (FirstLineConfig.UserSpaceRate).
		if u := rs.userSpace; u.interval > rs.challenge.r.interval {
			c.ChallengeInterval, c.ChallengeTolerance = uint64(u.interval), uint64(u.tolerance)
		}
	}
	return c
}

// configure hands c to the program and remembers which lists it looks up.
func (f *firstLine) configure(c xdpprog.FirstLineConfig) error {
	if err := f.fl.Configure(c); err != nil {
		return err
	}
	l := c.Lookups()
	f.lookups.Store(&l)
	return nil
}

// stages are the stages on and in monitor mode for rs.
func (f *firstLine) stages(rs *ruleset) (on, mon xdpprog.Stage) {
	on, mon = rs.firstLine.stages()
	if !rs.enabled {
		return 0, 0
	}
	return on, mon
}

// checkTx turns the cookie stage's answers off when the driver fails the
// XDP_TX of most of the cookie SYN-ACKs sent since the last check: the
// user-space proxy answers, and XDP still drops the SYNs over the
// challenge budget, which the proxy would drop anyway, so that a flood
// costs the workers at most the budget.
func (i *Inspector) checkTx(f *firstLine, rs *ruleset) {
	if f.txErrors == nil || f.noTx.Load() {
		return
	}
	c, err := f.fl.Counters()
	if err != nil {
		return
	}
	txe, ok := f.txErrors()
	if !ok {
		return
	}
	sent, failed := c.CookieSent-f.lastCookies, txe-f.lastTxErr
	f.lastCookies, f.lastTxErr = c.CookieSent, txe
	if sent == 0 || failed*2 < sent {
		return
	}
	f.noTx.Store(true)
	i.log.Warn("protect: the outer driver drops frames sent with XDP_TX (a veth whose peer has no XDP program and GRO off does): SYN cookies are answered from user space instead; XDP still drops SYNs over the challenge budget",
		"cookies_sent", sent, "xdp_tx_errors", failed)
	i.reloadMu.Lock()
	defer i.reloadMu.Unlock()
	if err := f.apply(i, i.rules.Load()); err != nil {
		f.errs.Add(1)
	}
}

// scopeFlags keeps the attack flags of old that r still allows and sets
// the monitor bit from its modes.
func scopeFlags(r *rule, old uint32) uint32 {
	fl := old &^ xdpprog.ScopeMonitor
	if r.oosMode == ModeDisabled {
		fl &^= xdpprog.ScopeOutOfState
	}
	if r.synMode == ModeDisabled || r.action != ActionChallenge {
		fl &^= xdpprog.ScopeChallenge
	}
	if r.oosMode == ModeMonitor || r.synMode == ModeMonitor {
		// One bit for both: a rule whose two protections differ in mode
		// only counts in XDP, and its mitigation stays in user space.
		fl |= xdpprog.ScopeMonitor
	}
	return fl
}

// penalize puts src in the box after it went over its per-source
// threshold, at most once per half penalty. The first time, the program
// is told (by the controller, within a tick) to look the box up.
func (f *firstLine) penalize(slot uint64, src netip.Addr, now int64) {
	penalty := f.penalty.Load()
	if penalty <= 0 {
		return
	}
	p := &f.penalized[slot&(srcSlots-1)]
	if now < p.Load()-penalty/2 {
		return
	}
	p.Store(now + penalty)
	if err := f.fl.Penalize(src, f.base+uint64(now+penalty)); err != nil {
		f.errs.Add(1)
	}
	if !f.penaltyOn.Load() && f.penaltyOn.CompareAndSwap(false, true) {
		f.listsDirty.Store(true)
	}
}

// track queues a flow the tracker just created, keyed as it arrives on
// the outer interface.
func (f *firstLine) track(b *xdpprog.FlowBatch, s *flow.Segment) { b.Add(flowOf(s)) }

// flush puts a worker's new flows in the map (one syscall).
func (f *firstLine) flush(b *xdpprog.FlowBatch) {
	if b.Len() > 0 {
		if err := f.fl.AddFlows(b); err != nil {
			f.errs.Add(1)
		}
	}
}

// RunFirstLine keeps the first line current until ctx ends: every 100 ms
// it flags the scopes whose meters are over (with what XDP took counted
// in, so a flag holds while XDP absorbs the attack, and a hold time after
// it), and every 10 s it sweeps flows the table no longer has from the
// flow map.
func (i *Inspector) RunFirstLine(ctx context.Context) {
	t := time.NewTicker(firstLineTick)
	defer t.Stop()
	lastSweep := i.clock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f := i.first.Load()
		if f == nil {
			continue
		}
		now := i.clock()
		rs := i.rules.Load()
		i.checkTx(f, rs)
		if f.listsDirty.Swap(false) {
			i.reloadMu.Lock()
			if err := f.configure(f.config(i, i.rules.Load())); err != nil {
				f.errs.Add(1)
			}
			i.reloadMu.Unlock()
		}
		f.control(rs, now)
		if now-lastSweep >= int64(sweepEvery) {
			lastSweep = now
			i.sweep(f, now)
		}
	}
}

// control updates each scope's flags.
func (f *firstLine) control(rs *ruleset, now int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rs.rules {
		st := f.scopes[r.scope]
		if st == nil {
			continue
		}
		sc, err := f.fl.Scope(r.scope)
		if err != nil {
			f.errs.Add(1)
			continue
		}
		dt := now - st.lastCheck
		st.lastCheck = now
		dOOS, dSYN := sc.OutOfState-st.last.OutOfState, sc.SYNs-st.last.SYNs
		st.last = sc
		if r.oosMode != ModeDisabled && rs.enabled && (peekOver(&r.oos, now) || overRate(dOOS, dt, r.oos.r)) {
			st.oosUntil = now + f.hold.Load()
		}
		if r.synMode != ModeDisabled && r.action == ActionChallenge && rs.enabled && (peekOver(&r.syn, now) || overRate(dSYN, dt, r.syn.r)) {
			st.synUntil = now + f.hold.Load()
		}
		want := scopeFlags(r, 0)
		if now < st.oosUntil && r.oosMode != ModeDisabled {
			want |= xdpprog.ScopeOutOfState
		}
		if now < st.synUntil && r.synMode != ModeDisabled && r.action == ActionChallenge {
			want |= xdpprog.ScopeChallenge
		}
		if want != st.flags {
			if err := f.fl.Set(xdpprog.Scopes, r.scope, want); err != nil {
				f.errs.Add(1)
				continue
			}
			st.flags = want
		}
	}
}

// peekOver reports whether m is over threshold now, without counting a
// packet.
func peekOver(m *meter, now int64) bool {
	if m.r.interval == 0 {
		return true
	}
	return max(m.tat.Load(), now)-now > m.r.tolerance
}

// overRate reports whether n packets in dt ns exceed r's rate.
func overRate(n uint64, dt int64, r rate) bool {
	if n == 0 || dt <= 0 {
		return false
	}
	if r.interval == 0 {
		return true
	}
	return int64(n)*r.interval > dt
}

// sweep removes flows the table no longer tracks from the flow map.
func (i *Inspector) sweep(f *firstLine, now int64) {
	sec := tableNow(now)
	kept, _, err := f.fl.SweepFlows(func(fl xdpprog.Flow) bool {
		s := segOf(fl)
		_, ok := i.table.Lookup(&s, sec)
		return ok
	})
	if err != nil {
		f.errs.Add(1)
	}
	f.flowsN.Store(int64(kept))
}

// FirstLineStats are the first line's counters for metrics and stats.
type FirstLineStats struct {
	xdpprog.FirstLineCounters
	Stages, Monitor  string
	StagesOn         []string        // names of the stages on
	MonitorOn        map[string]bool // of those, the ones only counting
	Flows, Penalized int
	Flagged          map[string]uint32 // scope → flags, for scopes flagged now
	Errors           uint64
	// NoXDPTx: the cookie stage stopped answering in XDP because the
	// driver failed its XDP_TX (it still enforces the challenge budget).
	NoXDPTx bool
	// Lookups are the source lists the program looks up: allowlist,
	// blocklist, penalty_box, passed (the others are empty).
	Lookups []string
}

// FirstLineStats reads the first line's counters; ok is false without one.
func (i *Inspector) FirstLineStats() (FirstLineStats, bool) {
	f := i.first.Load()
	if f == nil {
		return FirstLineStats{}, false
	}
	c, err := f.fl.Counters()
	if err != nil {
		f.errs.Add(1)
	}
	on, mon := f.stages(i.rules.Load())
	st := FirstLineStats{FirstLineCounters: c, Stages: on.String(), Monitor: mon.String(),
		Flows: int(f.flowsN.Load()), Penalized: f.fl.Penalized(), Flagged: map[string]uint32{}, Errors: f.errs.Load(),
		NoXDPTx: f.noTx.Load(), MonitorOn: map[string]bool{}}
	if l := f.lookups.Load(); l != nil {
		st.Lookups = *l
	}
	for _, n := range xdpprog.StageNames(on) {
		st.StagesOn = append(st.StagesOn, n)
		st.MonitorOn[n] = len(xdpprog.StageNames(mon&stageByName(n))) > 0
	}
	f.mu.Lock()
	for p, s := range f.scopes {
		if s.flags&(xdpprog.ScopeOutOfState|xdpprog.ScopeChallenge) != 0 {
			st.Flagged[p.String()] = s.flags
		}
	}
	f.mu.Unlock()
	return st, true
}

// stageByName returns the stage called name.
func stageByName(name string) xdpprog.Stage {
	for s := xdpprog.Stage(1); s <= xdpprog.AllStages; s <<= 1 {
		if s.String() == name {
			return s
		}
	}
	return 0
}
