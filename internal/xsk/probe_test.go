package xsk_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/xsk"
)

// TestProbes: each probe answers yes or no (never an error) as root, and
// yes on a kernel at least as new as the feature's release.
func TestProbes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (AF_XDP sockets): run the tests as root")
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	atLeast := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	for _, p := range []struct {
		name  string
		probe func() error
		since [2]int
	}{{"tx metadata", xsk.ProbeTxMetadata, [2]int{6, 11}}, {"tx budget", xsk.ProbeTxBudget, [2]int{6, 17}}} {
		err := p.probe()
		if err != nil && !errors.Is(err, xsk.ErrNotSupported) {
			t.Errorf("%s: %v, want yes or not supported", p.name, err)
			continue
		}
		// Only one way: an older kernel may have it backported.
		if atLeast(p.since[0], p.since[1]) && err != nil {
			t.Errorf("%s on Linux %d.%d: not supported, but Linux %d.%d has it", p.name, major, minor, p.since[0], p.since[1])
		}
	}
}
