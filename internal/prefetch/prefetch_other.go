//go:build !amd64

package prefetch

// Line does nothing where no assembly version exists.
func Line(a uintptr) {}

// Lines2 does nothing where no assembly version exists.
func Lines2(a, b uintptr) {}

// Lines3 does nothing where no assembly version exists.
func Lines3(a, b, c uintptr) {}
