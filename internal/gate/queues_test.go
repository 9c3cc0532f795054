package gate

import (
	"strings"
	"testing"

	"github.com/xskgate/xskgate/internal/ethtool"
)

func q(name string, rx, tx, max int, combined bool) ifQueues {
	return ifQueues{Name: name, Channels: ethtool.Channels{RX: rx, TX: tx, MaxRX: max, MaxTX: max, Combined: combined}}
}

// TestPlanQueues: every RX queue of both interfaces is served, or the
// refusal names the interface, the counts and the fix.
func TestPlanQueues(t *testing.T) {
	for _, tc := range []struct {
		name         string
		requested    int
		outer, inner ifQueues
		want         int
		err          []string // substrings of the one-line error
	}{
		{name: "equal, all", outer: q("eth0", 4, 4, 8, true), inner: q("eth1", 4, 4, 8, true), want: 4},
		{name: "equal, asked for all", requested: 4, outer: q("eth0", 4, 4, 8, true), inner: q("eth1", 4, 4, 8, true), want: 4},
		{name: "veth one queue", outer: q("outer", 1, 1, 2, false), inner: q("inner", 1, 1, 2, false), want: 1},
		{name: "more TX than RX is fine", outer: q("outer", 2, 4, 4, false), inner: q("inner", 2, 2, 4, false), want: 2},
		{name: "RX differ but TX cover both", outer: q("outer", 1, 2, 2, false), inner: q("inner", 2, 2, 2, false), want: 2},
		{name: "outer has more", outer: q("eth0", 4, 4, 8, true), inner: q("eth1", 2, 2, 8, true),
			err: []string{"eth0 has 4 RX queues and eth1 2 TX queues", "eth0's queues 2-3 to the host stack, never inspected",
				"`ethtool -L eth0 combined 2`", "(or `ethtool -L eth1 combined 4`)"}},
		{name: "inner has more, outer cannot grow", outer: q("outer", 1, 1, 1, false), inner: q("inner", 2, 2, 2, false),
			err: []string{"inner has 2 RX queues and outer 1 TX queues", "inner's queues 1 to the host stack", "`ethtool -L inner rx 1 tx 1`"}},
		{name: "fewer asked", requested: 2, outer: q("eth0", 4, 4, 8, true), inner: q("eth1", 4, 4, 8, true),
			err: []string{"queues 2 leaves eth0's RX queues 2-3 (of 4) and eth1's RX queues 2-3 (of 4) unserved",
				"use --queues 0", "serve all 4", "`ethtool -L eth0 combined 2` and `ethtool -L eth1 combined 2`"}},
		{name: "more asked", requested: 3, outer: q("outer", 2, 2, 2, false), inner: q("inner", 2, 2, 2, false),
			err: []string{"queues 3: outer has 2 RX queues and inner 2, so there is no queue 2 to serve", "use --queues 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planQueues(tc.requested, tc.outer, tc.inner)
			if tc.err == nil {
				if err != nil || got != tc.want {
					t.Fatalf("planQueues = %d, %v; want %d", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("planQueues = %d, want an error", got)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, s := range tc.err {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q lacks %q", msg, s)
				}
			}
		})
	}
}
