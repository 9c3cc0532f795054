package lab

import (
	"errors"
	"net"
	"net/netip"
	"os"

	"github.com/xskgate/xskgate/internal/traffic"
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

// ServeForTest serves verified TCP streams (traffic.Serve) at port on the
// server's addresses, IPv4 and IPv6, from the server namespace, until tb's
// cleanup. Any failure is fatal.
func (l *Lab) ServeForTest(tb TB, port uint16) {
	tb.Helper()
	if err := l.Do(l.ServerNS, func() error {
		for _, a := range []netip.Addr{l.ServerIP4, l.ServerIP6} {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(a, port).String())
			if err != nil {
				return err
			}
			s := traffic.Serve(ln)
			tb.Cleanup(func() { s.Close() })
		}
		return nil
	}); err != nil {
		tb.Fatalf("serving TCP on the server at port %d: %v", port, err)
	}
}
