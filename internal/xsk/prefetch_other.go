//go:build !amd64

package xsk

// prefetchLines is a no-op where no assembly version exists.
func prefetchLines(a, b, c uintptr) {}
