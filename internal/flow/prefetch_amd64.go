package flow

// prefetch asks the CPU to bring the cache line holding a towards L1
// (PREFETCHT0). Unlike a load, a prefetch retires at once: a load that
// misses blocks the reorder buffer and so bounds how many misses are in
// flight, a prefetch does not. It never faults, so any address is safe.
// Go has no prefetch intrinsic for user code, hence the assembly; a call
// costs a few nanoseconds.
//
//go:noescape
func prefetch(a uintptr)

// prefetch2 is prefetch for two lines.
//
//go:noescape
func prefetch2(a, b uintptr)

// prefetch3 is prefetch2 for three lines.
//
//go:noescape
func prefetch3(a, b, c uintptr)
