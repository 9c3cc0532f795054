package protect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

// fullInspector returns an Inspector whose flow table is full of assured,
// open flows (which the table never evicts), with SYNs below every
// threshold: a new flow is refused for lack of room, not for a flood.
func fullInspector(t *testing.T, mut func(*Config)) (*Inspector, *fakeClock) {
	t.Helper()
	c := noSynFlood(baseConfig(ModeMitigate))
	if mut != nil {
		mut(&c)
	}
	// Established flows idle for 10 s expire: a test can make room.
	tb, err := flow.New(flow.Config{Capacity: 64, Timeouts: flow.Timeouts{Established: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{}
	clk.ns.Store(100e9)
	i, err := New(c, Options{Workers: 1, Table: tb, Clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; ; k++ {
		if k > 1<<16 {
			t.Fatal("the flow table never filled")
		}
		s := flow.Segment{Src: netip.AddrFrom4([4]byte{198, 19, byte(k >> 8), byte(k)}), Dst: srv4, SrcPort: 1000, DstPort: 80,
			Flags: flow.FlagACK, Dir: flow.Inbound}
		v := tb.Insert(&s, flow.Open{State: flow.StateEstablished, ClientISN: 1, ClientWScale: -1, ClientWindow: 1000,
			ServerISN: 2, ServerWScale: -1, ServerWindow: 1000}, i.Now())
		if v.Reason == flow.ReasonTableFull {
			return i, clk
		}
	}
}

// TestTableFull: a SYN the full table cannot track is challenged by
// default (SYN proxy cookie), so a flood that fills the table reaches no
// server; on_table_full: pass forwards it untracked (the old fail-open),
// drop drops it; monitor mode counts the challenge and passes.
func TestTableFull(t *testing.T) {
	for _, tc := range []struct {
		name             string
		mut              func(*Config)
		want             engine.Verdict
		verdict, outcome string
	}{
		{"default challenges", nil, engine.Bounce, "challenge", "challenge"},
		{"challenge", func(c *Config) { c.OnTableFull = TableFullChallenge }, engine.Bounce, "challenge", "challenge"},
		{"pass", func(c *Config) { c.OnTableFull = TableFullPass }, engine.Forward, "pass", "pass"},
		{"drop", func(c *Config) { c.OnTableFull = TableFullDrop }, engine.Drop, "drop", "drop"},
		{"monitor", func(c *Config) { c.Rules[0].Mode = ModeMonitor }, engine.Forward, "challenge", "pass"},
		{"syn protection disabled", func(c *Config) { c.Rules[0].SynFlood.Mode = ModeDisabled }, engine.Forward, "pass", "pass"},
		{"no rule", func(c *Config) { c.Rules = c.Rules[1:] }, engine.Forward, "pass", "pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, _ := fullInspector(t, tc.mut)
			pk := run(i, engine.Outer, synFrom(cli4, 40000, 1).frame())
			if pk.Verdict != tc.want {
				t.Fatalf("SYN with the table full: %v, want %v", pk.Verdict, tc.want)
			}
			if st := i.Stats(); st.Count("table_full", tc.verdict, tc.outcome) != 1 {
				t.Fatalf("decisions %+v", st.Decisions)
			}
			if tc.want == engine.Bounce {
				p := parsed(t, pk)
				if p.TCP.Flags != packet.SYN|packet.ACK || p.TCP.Ack != 2 || p.Dst != cli4 {
					t.Fatalf("challenge %+v", p.TCP)
				}
			}
		})
	}
}

// TestTableFullChallengePassed: the client that solved a table-full
// challenge is proxied as soon as the table has room (here: the flows
// that filled it expired), and not before.
func TestTableFullChallengePassed(t *testing.T) {
	i, clk := fullInspector(t, nil)
	cookie := parsed(t, run(i, engine.Outer, synFrom(cli4, 40000, 1).frame())).TCP.Seq
	ack := tseg{src: cli4, dst: srv4, sport: 40000, dport: 80, seq: 2, ack: cookie + 1, flags: packet.ACK, win: 500, ws: -1}
	if v := run(i, engine.Outer, ack.frame()).Verdict; v != engine.Drop {
		t.Fatalf("cookie ACK with the table still full: %v", v)
	}
	clk.advance(11 * time.Second) // the established flows' 10 s are over; the cookie is good for 32 s
	pk := run(i, engine.Outer, ack.frame())
	if p := parsed(t, pk); pk.Verdict != engine.Forward || p.TCP.Flags != packet.SYN || p.TCP.Seq != 1 {
		t.Fatalf("cookie ACK once the table had room: %v %+v", pk.Verdict, p.TCP)
	}
	if st := i.Stats(); st.Count("table_full", "drop", "drop") != 1 || st.Count("challenge_passed", "pass", "pass") != 1 {
		t.Fatalf("%+v", st.Decisions)
	}
}
