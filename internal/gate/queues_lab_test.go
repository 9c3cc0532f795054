package gate_test

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/lab"
)

// TestOpenRefusesUnservedQueues: on real veths whose queue counts cannot
// all be served, Open refuses with one line naming the interface, the
// counts and the fix, and leaves no XDP program attached; asking for fewer
// queues than an interface has is refused the same way.
func TestOpenRefusesUnservedQueues(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Queues: 2})
	open := func(queues int) error {
		ic := integrity.DefaultConfig()
		return l.Do(l.GateNS, func() error {
			g, err := gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Queues: queues, Integrity: &ic})
			if err == nil {
				g.Close()
			}
			return err
		})
	}
	attached := func() {
		t.Helper()
		l.Do(l.GateNS, func() error {
			for _, name := range []string{lab.OuterName, lab.InnerName} {
				if ln, err := netlink.LinkByName(name); err != nil {
					t.Fatal(err)
				} else if x := ln.Attrs().Xdp; x != nil && x.Attached {
					t.Errorf("%s has an XDP program after a refused Open", name)
				}
			}
			return nil
		})
	}
	check := func(err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatalf("Open succeeded, want a refusal with %q", want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("refusal is not one line: %q", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("refusal %q lacks %q", err, w)
			}
		}
		attached()
	}

	// Fewer queues than both interfaces have.
	check(open(1), "queues 1 leaves outer's RX queues 1 (of 2) and inner's RX queues 1 (of 2) unserved",
		"`ethtool -L outer rx 1 tx 1` and `ethtool -L inner rx 1 tx 1`")

	// Inner cut to one queue: outer's queue 1 would have no partner.
	if err := lab.SetQueues(l.GateNS, lab.InnerName, 1, 1); err != nil {
		t.Fatal(err)
	}
	check(open(0), "outer has 2 RX queues and inner 1 TX queues",
		"outer's queues 1 to the host stack, never inspected", "`ethtool -L outer rx 1 tx 1`", "(or `ethtool -L inner rx 2 tx 2`)")

	// Equal again, but the hosts' ends still have two TX queues: a veth
	// refuses a native XDP program then (ENOSPC). Open fails late, after
	// the sockets exist, and must release everything.
	if err := lab.SetQueues(l.GateNS, lab.OuterName, 1, 1); err != nil {
		t.Fatal(err)
	}
	err := open(0)
	if err == nil {
		t.Fatal("Open attached to a veth whose peer has more TX than it has RX queues")
	}
	t.Logf("late failure, released: %v", err)
	attached()

	// The hosts' ends at one queue too: all served.
	for _, e := range [][2]string{{l.ClientNS, lab.HostIfName}, {l.ServerNS, lab.HostIfName}} {
		if err := lab.SetQueues(e[0], e[1], 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := open(0); err != nil {
		t.Fatalf("Open with 1 and 1 queues: %v", err)
	}
	attached()
}
