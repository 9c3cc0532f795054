package gate

import (
	"strings"
	"testing"
)

// TestChange: what the gate cannot follow is named; going down and up is
// followed, not a change.
func TestChange(t *testing.T) {
	was := linkState{Index: 3, Name: "eth1", MTU: 1500, RX: 4, TX: 4, Up: true, Oper: "up"}
	for _, tc := range []struct {
		name string
		mut  func(*linkState)
		want string
	}{
		{"same", func(*linkState) {}, ""},
		{"down", func(s *linkState) { s.Up, s.Oper = false, "down" }, ""},
		{"removed", func(s *linkState) { *s = linkState{Removed: true} }, "removed from the gate's network namespace (deleted, or moved to another namespace)"},
		{"renamed", func(s *linkState) { s.Name = "wan0" }, `renamed to "wan0"`},
		{"mtu", func(s *linkState) { s.MTU = 9000 }, "MTU changed from 1500 to 9000"},
		{"queues", func(s *linkState) { s.RX, s.TX = 2, 2 }, "queue count changed from rx 4 tx 4 to rx 2 tx 2"},
		{"renamed and down", func(s *linkState) { s.Name, s.Up = "wan0", false }, `renamed to "wan0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := was
			tc.mut(&now)
			got := change(was, now)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("change = %q, want %q", got, tc.want)
			}
		})
	}
}
