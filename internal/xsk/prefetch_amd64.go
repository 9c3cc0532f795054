package xsk

// prefetchLines asks the CPU to bring three cache lines towards L1
// (PREFETCHT0). A prefetch retires at once and never faults, so the misses
// of a whole batch overlap instead of stalling one after the other.
//
//go:noescape
func prefetchLines(a, b, c uintptr)
