package xdpprog

import (
	"fmt"
	"net/netip"
)

// passLocked is Pass with the program held open.
func (f *FirstLine) passLocked(src netip.Addr, until uint64) error {
	// A new entry starts with its whole burst (tat 0); user space renews
	// a source at most once per half its time, so this cannot be used to
	// refill a source's rate.
	if err := f.m(steerMapXskgatePassed).Put(addr16(src.Unmap()), steerPassed{Until: until}); err != nil {
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
