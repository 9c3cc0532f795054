package lab

import (
	"errors"
	"os"
)

// TB is the part of testing.TB that ForTest uses (kept as an interface so
// that this package does not import "testing").
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

// ForTest brings a lab up for a test and takes it down in tb.Cleanup. It
// skips the test, with the reason, when not root or when the kernel has no
// network namespaces or veth; any other failure is fatal.
func ForTest(tb TB, cfg Config) *Lab {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("lab: needs root (network namespaces and veth): run the tests as root")
		return nil
	}
	l, err := Up(cfg)
	if err != nil {
		if errors.Is(err, ErrNeedRoot) || errors.Is(err, ErrUnsupported) {
			tb.Skip("lab: cannot build a test lab here: " + err.Error())
			return nil
		}
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(func() {
		if err := l.Down(); err != nil {
			tb.Fatalf("lab down: %v", err)
		}
	})
	return l
}
