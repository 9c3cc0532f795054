package protect

import (
	"net/netip"
	"sync/atomic"
)

// Sources that passed a challenge.
//
// While a scope is challenged, every new connection to it costs a cookie
// from the challenge budget, and a flood above the budget leaves a client
// an answer only with probability budget/flood: each miss costs it a SYN
// retransmission, 1 s and more. A valid cookie ACK proves that its source
// receives what is sent to it, so such a source is remembered for
// syn_proxy.passed_ttl, and its SYNs are answered outside the budget,
// within a rate of its own (passed_rate/passed_burst): spoofing a passed
// address reflects no more than that toward it. The XDP first line keeps
// the same set in its own map (xdpprog.FirstLine.Pass), so it answers
// those sources itself.

// passedSlots is the size of the user-space table (16 bytes a slot).
// Sources hashed to one slot replace each other: the newer pass wins.
const passedSlots = 1 << 16

type passedSlot struct {
	// entry is tag<<32 | until: the source's hash tag (never 0) and the
	// end of its pass in whole seconds of the Inspector clock; 0: empty.
	entry atomic.Uint64
	tat   atomic.Int64 // the source's own GCRA
}

// passedOf returns src's slot and its tag there.
func (i *Inspector) passedOf(src netip.Addr) (*passedSlot, uint64) {
	var m [2]uint64
	m[0], m[1] = addrWords(src)
	h := i.key.sum(m[:])
	return &i.passed[h&(passedSlots-1)], h>>32 | 1
}

// passedAllow reports whether src passed a challenge and is within its own
// rate, which it then spends.
func (i *Inspector) passedAllow(rs *ruleset, src netip.Addr, now int64) bool {
	if rs.passedTTL == 0 || !i.passedAny.Load() {
		return false
	}
	s, tag := i.passedOf(src)
	e := s.entry.Load()
	if e>>32 != tag || int64(uint32(e))*1e9 <= now {
		return false
	}
	return allowAt(&s.tat, rs.passed, now) && rs.passedAll.allow(now)
}

// pass records that src passed a challenge at now. A source already
// passed is renewed at most once per half its time, so a busy client costs
// the first line's map one update per half TTL, not one per connection.
func (i *Inspector) pass(rs *ruleset, src netip.Addr, now int64) {
	ttl := int64(rs.passedTTL)
	if ttl == 0 {
		return
	}
	s, tag := i.passedOf(src)
	e := s.entry.Load()
	if e>>32 == tag && int64(uint32(e))*1e9-now > ttl/2 {
		return
	}
	until := now + ttl
	if !i.passedAny.Load() && i.passedAny.CompareAndSwap(false, true) {
		if f := i.first.Load(); f != nil {
			f.listsDirty.Store(true) // the program starts looking sources up
		}
	}
	// Whole seconds, rounded up: a pass never ends before its TTL (at
	// most 24 h, so the 32 bits hold it for 136 years of uptime).
	s.entry.Store(tag<<32 | uint64((until+1e9-1)/1e9))
	if e>>32 != tag {
		s.tat.Store(0) // a new source starts with its whole burst
	}
	if f := i.first.Load(); f != nil {
		f.pass(src, until)
	}
}

// pass puts src in the first line's map of passed sources until then
// (Inspector clock).
func (f *firstLine) pass(src netip.Addr, until int64) {
	if err := f.fl.Pass(src, f.base+uint64(until)); err != nil {
		f.errs.Add(1)
	}
}
