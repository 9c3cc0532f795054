package xdpprog

import (
	"fmt"
	"net/netip"
)

// passLocked is Pass with the program held open.
func (f *FirstLine) passLocked(src netip.Addr, until uint64) error {
	// A new entry starts with its whole burst (tat 0); a renewal keeps the
	// source's GCRA, so passing again (each valid cookie ACK may, where
	// sources share a slot of user space's table) never refills its rate.
	// A SYN spending the rate between the lookup and the update is lost
	// to the renewal: the source gets one SYN-ACK more, not a burst.
	m := f.m(steerMapXskgatePassed)
	k := addr16(src.Unmap())
	var v steerPassed
	if err := m.Lookup(k, &v); err != nil {
		v = steerPassed{}
	}
	v.Until = until
	if err := m.Put(k, v); err != nil {
		return fmt.Errorf("first line: pass %s: %w", src, err)
	}
	return nil
}

// Pass records that src passed a challenge: until the kernel's
// CLOCK_MONOTONIC reaches until (ns), its SYNs to a challenged scope are
// answered outside the challenge budget, within FirstLineConfig.PassedRate.
// The map is an LRU: when full, the least recently used source goes.
func (f *FirstLine) Pass(src netip.Addr, until uint64) error {
	return f.use(func() error { return f.passLocked(src, until) })
}

// PassedSources returns the number of sources in the passed map (expired
// ones included until the LRU reuses their slot).
func (f *FirstLine) PassedSources() (n int) {
	f.use(func() error { n = count(f.m(steerMapXskgatePassed)); return nil })
	return n
}
