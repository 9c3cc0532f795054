package xdpprog

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Stage is one stage of the in-kernel first line (a bit set).
type Stage uint32

// The stages, in the order the program runs them on a frame arriving on
// the outer interface.
const (
	// StageAllow: sources in the allowlist skip the first line.
	StageAllow Stage = 1 << iota
	// StageBlock: sources in the blocklist are dropped.
	StageBlock
	// StagePenalty: sources user space put in the penalty box are dropped
	// until their expiry.
	StagePenalty
	// StageOutOfState: while a scope is flagged ScopeOutOfState, non-SYN
	// TCP to it whose 5-tuple is not in the flow map is dropped.
	StageOutOfState
	// StageCookie: while a scope is flagged ScopeChallenge, a SYN to it is
	// answered with a cookie SYN-ACK (XDP_TX), the proxy's own cookie.
	StageCookie

	AllStages = StageAllow | StageBlock | StagePenalty | StageOutOfState | StageCookie
)

var stageNames = []struct {
	s    Stage
	name string
}{{StageAllow, "allowlist"}, {StageBlock, "blocklist"}, {StagePenalty, "penalty_box"}, {StageOutOfState, "out_of_state"}, {StageCookie, "syn_cookie"}}

// StageNames lists the names of the stages in s.
func StageNames(s Stage) []string {
	var out []string
	for _, n := range stageNames {
		if s&n.s != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func (s Stage) String() string {
	out := ""
	for _, n := range stageNames {
		if s&n.s != 0 {
			if out != "" {
				out += ","
			}
			out += n.name
		}
	}
	if out == "" {
		return "none"
	}
	return out
}

// Scope flags: what user space's meters say about a protected destination.
const (
	ScopeOutOfState uint32 = 1 << 0 // out-of-state rate over threshold
	ScopeChallenge  uint32 = 1 << 1 // SYN rate over threshold, challenge action
	ScopeMonitor    uint32 = 1 << 2 // the scope's rule is in monitor mode: count only
)

// FirstLineConfig is what the program needs besides the maps.
type FirstLineConfig struct {
	Stages  Stage // on
	Monitor Stage // of those, count only
	// The SYN proxy's cookie key and parameters, as the user-space proxy
	// uses them (package protect): a cookie made in XDP is checked there.
	Key0, Key1 uint64
	ClockBase  uint64 // CLOCK_MONOTONIC ns at the proxy clock's zero
	MSS4, MSS6 uint16
	Window     uint16
	WScale     uint8
	SACK       bool
	// ChallengeInterval and ChallengeTolerance bound the cookie SYN-ACKs
	// sent in XDP, over all CPUs, as a GCRA in nanoseconds: one cookie is
	// worth the interval, the burst is the tolerance (interval 0: no
	// limit). They are given, not derived from a rate here, so that the
	// caller can pass the very parameters its own budget uses (package
	// protect passes its challenge limiter's).
	ChallengeInterval, ChallengeTolerance uint64
	// CookieInUserSpace: XDP_TX does not work on the interface, so the
	// cookie stage only enforces the challenge budget: SYNs within it go
	// on to the user-space proxy, the rest are dropped in XDP.
	CookieInUserSpace bool
	// PassedInterval and PassedTolerance are the GCRA of the SYN-ACKs
	// each source that passed a challenge (Pass) gets outside the
	// challenge budget, in ns as ChallengeInterval; 0 turns that
	// exemption off.
	PassedInterval, PassedTolerance uint64
	// PassedAllInterval and PassedAllTolerance are the GCRA of all passed
	// sources' answers together (0: no cap).
	PassedAllInterval, PassedAllTolerance uint64
	// Which source lists hold entries: the program looks up only those
	// (an empty list's stage matches nothing anyway). HasPenalty: a source
	// was put in the penalty box since the program was loaded.
	// HasPassed: a source was passed (Pass) since then.
	HasAllow, HasBlock, HasPenalty, HasPassed bool
}

// FirstLine feeds the first line of a Program loaded with
// Options.FirstLine. Its methods are syscalls on maps: safe from any
// goroutine, not for the per-packet path (batch flow updates instead).
type FirstLine struct {
	p *Program
}

// FirstLine returns the program's first line, nil if it was loaded
// without one.
func (p *Program) FirstLine() *FirstLine {
	if !p.firstLine {
		return nil
	}
	return &FirstLine{p}
}

// ErrClosed is returned by a FirstLine whose Program was closed.
var ErrClosed = errors.New("xdp program closed")

// use runs fn with the program's maps held open: a FirstLine may outlive
// its Program (a controller finishing its tick while the gate closes).
func (f *FirstLine) use(fn func() error) error {
	f.p.mu.RLock()
	defer f.p.mu.RUnlock()
	if f.p.coll == nil {
		return ErrClosed
	}
	return fn()
}

func (f *FirstLine) m(name string) *ebpf.Map { return f.p.coll.Maps[name] }

// configureLocked is Configure with the program held open.
func (f *FirstLine) configureLocked(c FirstLineConfig) error {
	v := steerConfig{Stages: uint32(c.Stages & AllStages), Monitor: uint32(c.Monitor & AllStages),
		Key0: c.Key0, Key1: c.Key1, ClockBase: c.ClockBase, Mss4: c.MSS4, Mss6: c.MSS6,
		Window: c.Window, Wscale: c.WScale}
	if c.SACK {
		v.Sack = 1
	}
	if c.CookieInUserSpace {
		v.CookieUser = 1
	}
	// One budget shared by all CPUs (steer.c says why).
	v.CookieInterval, v.CookieTolerance = c.ChallengeInterval, c.ChallengeTolerance
	v.PassedInterval, v.PassedTolerance = c.PassedInterval, c.PassedTolerance
	v.PassedAllInterval, v.PassedAllTolerance = c.PassedAllInterval, c.PassedAllTolerance
	for _, l := range c.lists() {
		if l.on {
			v.Lists |= l.bit
		}
	}
	if err := f.m(steerMapXskgateConfig).Put(uint32(0), v); err != nil {
		return fmt.Errorf("first line: configure: %w", err)
	}
	return nil
}

// The config's list bits (steer.c: L_*).
const (
	listAllow uint32 = 1 << iota
	listBlock
	listPenalty
	listPassed
)

// sourceList is one source list of the first line as c sets it: whether
// the program looks it up, its bit in the program's config, its name.
type sourceList struct {
	on   bool
	bit  uint32
	name string
}

func (c FirstLineConfig) lists() [4]sourceList {
	return [...]sourceList{{c.HasAllow, listAllow, "allowlist"}, {c.HasBlock, listBlock, "blocklist"},
		{c.HasPenalty, listPenalty, "penalty_box"}, {c.HasPassed, listPassed, "passed"}}
}

// Lookups names the source lists the program looks up under c:
// allowlist, blocklist, penalty_box, passed, in that order.
func (c FirstLineConfig) Lookups() []string {
	var names []string
	for _, l := range c.lists() {
		if l.on {
			names = append(names, l.name)
		}
	}
	return names
}

// List names a prefix list of the first line.
type List int

const (
	Allowlist List = iota
	Blocklist
	Scopes
)

var listMaps = [...][2]string{
	Allowlist: {steerMapXskgateAllow4, steerMapXskgateAllow6},
	Blocklist: {steerMapXskgateBlock4, steerMapXskgateBlock6},
	Scopes:    {steerMapXskgateScope4, steerMapXskgateScope6},
}

func lpmKey(p netip.Prefix) (any, int) {
	p = p.Masked()
	if p.Addr().Is4() {
		a := p.Addr().As4()
		return steerLpm4{Prefixlen: uint32(p.Bits()), Addr: le32(a[:])}, 0
	}
	a := p.Addr().As16()
	k := steerLpm6{Prefixlen: uint32(p.Bits())}
	for i := range k.Addr {
		k.Addr[i] = le32(a[4*i:])
	}
	return k, 1
}

// le32 reads 4 network-order bytes as the host-order word the kernel sees
// in memory (little-endian machines: bpf2go's bindings are bpfel).
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// setLocked is Set with the program held open.
func (f *FirstLine) setLocked(l List, prefix netip.Prefix, v uint32) error {
	k, fam := lpmKey(prefix)
	m := f.m(listMaps[l][fam])
	var err error
	if l == Scopes {
		var sc steerScope
		if e := m.Lookup(k, &sc); e != nil {
			sc = steerScope{}
		}
		sc.Flags = v
		err = m.Put(k, sc)
	} else {
		err = m.Put(k, v)
	}
	if err != nil {
		return fmt.Errorf("first line: set %s in list %d: %w", prefix, l, err)
	}
	return nil
}

// ScopeCounts are what the first line did for one scope since it was set:
// frames it took that user space's meters never see.
type ScopeCounts struct {
	Flags      uint32
	OutOfState uint64 // non-SYN TCP without a flow, dropped (or would be)
	SYNs       uint64 // SYNs answered with a cookie (or would be)
}

// scopeLocked is Scope with the program held open.
func (f *FirstLine) scopeLocked(prefix netip.Prefix) (ScopeCounts, error) {
	k, fam := lpmKey(prefix)
	var sc steerScope
	if err := f.m(listMaps[Scopes][fam]).Lookup(k, &sc); err != nil {
		return ScopeCounts{}, fmt.Errorf("first line: scope %s: %w", prefix, err)
	}
	return ScopeCounts{Flags: sc.Flags, OutOfState: sc.Oos, SYNs: sc.Syns}, nil
}

// replaceLocked is Replace with the program held open.
func (f *FirstLine) replaceLocked(l List, want map[netip.Prefix]uint32) error {
	keep := map[netip.Prefix]bool{}
	for p, v := range want {
		if err := f.setLocked(l, p, v); err != nil {
			return err
		}
		keep[p.Masked()] = true
	}
	var errs []error
	for fam, name := range listMaps[l] {
		m := f.m(name)
		var stale []any
		it := m.Iterate()
		v := make([]byte, m.ValueSize())
		if fam == 0 {
			var k steerLpm4
			for it.Next(&k, &v) {
				if p := prefix4(k); !keep[p] {
					stale = append(stale, k)
				}
			}
		} else {
			var k steerLpm6
			for it.Next(&k, &v) {
				if p := prefix6(k); !keep[p] {
					stale = append(stale, k)
				}
			}
		}
		errs = append(errs, it.Err())
		for _, k := range stale {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("first line: replace list %d: %w", l, err)
	}
	return nil
}

func prefix4(k steerLpm4) netip.Prefix {
	a := [4]byte{byte(k.Addr), byte(k.Addr >> 8), byte(k.Addr >> 16), byte(k.Addr >> 24)}
	return netip.PrefixFrom(netip.AddrFrom4(a), int(k.Prefixlen))
}

func prefix6(k steerLpm6) netip.Prefix {
	var a [16]byte
	for i, w := range k.Addr {
		a[4*i], a[4*i+1], a[4*i+2], a[4*i+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), int(k.Prefixlen))
}

// lenLocked is Len with the program held open.
func (f *FirstLine) lenLocked(l List) int {
	n := 0
	for _, name := range listMaps[l] {
		n += count(f.m(name))
	}
	return n
}

func count(m *ebpf.Map) int {
	n := 0
	it := m.Iterate()
	var k, v []byte
	for it.Next(&k, &v) {
		n++
	}
	return n
}

// addr16 is an address as the program keys it: IPv4 as ::ffff:a.b.c.d.
func addr16(a netip.Addr) steerAddr16 {
	b := a.As16() // IPv4 becomes ::ffff:a.b.c.d
	var k steerAddr16
	for i := range k.W {
		k.W[i] = le32(b[4*i:])
	}
	return k
}

// penalizeLocked is Penalize with the program held open.
func (f *FirstLine) penalizeLocked(src netip.Addr, until uint64) error {
	if err := f.m(steerMapXskgatePenalty).Put(addr16(src.Unmap()), until); err != nil {
		return fmt.Errorf("first line: penalize %s: %w", src, err)
	}
	return nil
}

// penalizedLocked is Penalized with the program held open.
func (f *FirstLine) penalizedLocked() int { return count(f.m(steerMapXskgatePenalty)) }

// FirstLineCounters are the first line's counts, summed over CPUs.
type FirstLineCounters struct {
	AllowPass, BlockDrop, BlockWould, PenaltyDrop, PenaltyWould uint64
	OutOfStateDrop, OutOfStateWould                             uint64
	CookieSent, CookieWould, CookieNoFit, NotParsed             uint64
	CookieLimited                                               uint64 // over the challenge budget: dropped
	// CookieToUser: SYNs within the budget passed on to the user-space
	// proxy because XDP_TX does not work (CookieInUserSpace).
	CookieToUser uint64
	// CookiePassed: SYNs from sources that passed a challenge, answered
	// (or passed on) outside the budget.
	CookiePassed uint64
}

// countersLocked is Counters with the program held open.
func (f *FirstLine) countersLocked() (FirstLineCounters, error) {
	var c FirstLineCounters
	for i, dst := range []*uint64{&c.AllowPass, &c.BlockDrop, &c.BlockWould, &c.PenaltyDrop, &c.PenaltyWould,
		&c.OutOfStateDrop, &c.OutOfStateWould, &c.CookieSent, &c.CookieWould, &c.CookieNoFit, &c.NotParsed, &c.CookieLimited, &c.CookieToUser, &c.CookiePassed} {
		var per []uint64
		if err := f.p.stats.Lookup(uint32(statAllowPass+i), &per); err != nil {
			return FirstLineCounters{}, fmt.Errorf("first line counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return c, nil
}

// Index of the first of the first line's counters in the stats map (the
// C enum: C_ALLOW_PASS).
const statAllowPass = 2

// The exported methods hold the program open (use) around their work.

// Configure sets the stages and the cookie parameters.
func (f *FirstLine) Configure(c FirstLineConfig) error {
	return f.use(func() error { return f.configureLocked(c) })
}

// Set puts prefix into list l. For Scopes, v are the scope's flags
// (ScopeOutOfState, ScopeChallenge, ScopeMonitor) and its counters are
// kept; for the other lists v is stored as is.
func (f *FirstLine) Set(l List, prefix netip.Prefix, v uint32) error {
	return f.use(func() error { return f.setLocked(l, prefix, v) })
}

// Scope reads a scope's flags and counters.
func (f *FirstLine) Scope(prefix netip.Prefix) (sc ScopeCounts, err error) {
	err = f.use(func() error { sc, err = f.scopeLocked(prefix); return err })
	return sc, err
}

// Replace makes list l hold exactly the prefixes of want, with their
// values. New entries go in before stale ones leave, so a prefix in both
// the old and the new list is never missing.
func (f *FirstLine) Replace(l List, want map[netip.Prefix]uint32) error {
	return f.use(func() error { return f.replaceLocked(l, want) })
}

// Len returns the number of entries in list l (both families).
func (f *FirstLine) Len(l List) (n int) {
	f.use(func() error { n = f.lenLocked(l); return nil })
	return n
}

// Penalize drops every frame from src until the kernel's CLOCK_MONOTONIC
// reaches until (ns). The box is an LRU map: when full, the oldest entry
// goes.
func (f *FirstLine) Penalize(src netip.Addr, until uint64) error {
	return f.use(func() error { return f.penalizeLocked(src, until) })
}

// Penalized returns the number of sources in the penalty box (expired ones
// included until the LRU reuses their slot).
func (f *FirstLine) Penalized() (n int) {
	f.use(func() error { n = f.penalizedLocked(); return nil })
	return n
}

// Counters reads the first line's counters.
func (f *FirstLine) Counters() (c FirstLineCounters, err error) {
	err = f.use(func() error { c, err = f.countersLocked(); return err })
	return c, err
}
