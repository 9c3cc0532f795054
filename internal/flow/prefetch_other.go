//go:build !amd64

package flow

// prefetch is a no-op where no assembly version exists.
func prefetch(a uintptr) {}

// prefetch2 is a no-op where no assembly version exists.
func prefetch2(a, b uintptr) {}

// prefetch3 is a no-op where no assembly version exists.
func prefetch3(a, b, c uintptr) {}
