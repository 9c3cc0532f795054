package prefetch

// Line prefetches the cache line holding a.
//
//go:noescape
func Line(a uintptr)

// Lines2 prefetches the lines holding a and b.
//
//go:noescape
func Lines2(a, b uintptr)

// Lines3 prefetches the lines holding a, b and c.
//
//go:noescape
func Lines3(a, b, c uintptr)
