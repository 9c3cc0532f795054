package protect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

// TestPassedSources: a source whose cookie ACK was valid is answered
// outside the spent challenge budget, up to its own burst, until its pass
// expires; other sources stay limited; passed_ttl 0 exempts nobody; and
// all passed sources together get no more than passed_total_rate.
func TestPassedSources(t *testing.T) {
	const passedBurst = 3
	flood := netip.MustParseAddr("198.19.200.1")
	for _, tc := range []struct {
		name       string
		ttl        time.Duration
		totalBurst uint32 // passed_total_burst at 1/s (0: 1000/s, no cap here)
		exempt     bool
		want       int // answered of 2*passedBurst
	}{
		{"ttl 10m", 10 * time.Minute, 0, true, passedBurst + 1}, // a GCRA admits burst + 1 at once
		{"ttl 0", 0, 0, false, 0},
		{"total cap", 10 * time.Minute, 1, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(ModeMitigate)
			c.SynProxy.ChallengeRate, c.SynProxy.ChallengeBurst = 1, 2
			c.SynProxy.PassedTTL, c.SynProxy.PassedRate, c.SynProxy.PassedBurst = &tc.ttl, 1, passedBurst
			c.SynProxy.PassedTotalRate, c.SynProxy.PassedTotalBurst = 1000, 1000
			if tc.totalBurst > 0 {
				c.SynProxy.PassedTotalRate, c.SynProxy.PassedTotalBurst = 1, tc.totalBurst
			}
			i, clk := newTestInspector(t, c)
			// The client solves one challenge: it has passed.
			cookie := parsed(t, run(i, engine.Outer, synFrom(cli4, 1000, 77).frame())).TCP.Seq
			ack := tseg{src: cli4, dst: srv4, sport: 1000, dport: 80, seq: 78, ack: cookie + 1, flags: packet.ACK, win: 100, ws: -1}
			if v := run(i, engine.Outer, ack.frame()).Verdict; v != engine.Forward {
				t.Fatalf("cookie ACK: %v", v)
			}
			// A flood spends the budget.
			for n := range 10 {
				run(i, engine.Outer, synFrom(flood, uint16(n+1), 1).frame())
			}
			if v := run(i, engine.Outer, synFrom(flood, 99, 1).frame()).Verdict; v != engine.Drop {
				t.Fatalf("flood SYN over budget: %v, want drop", v)
			}
			answered := 0
			for n := range 2 * passedBurst {
				if run(i, engine.Outer, synFrom(cli4, uint16(2000+n), 1).frame()).Verdict == engine.Bounce {
					answered++
				}
			}
			want := tc.want
			if answered != want {
				t.Fatalf("the client got %d of %d SYNs answered with the budget spent, want %d", answered, 2*passedBurst, want)
			}
			if st := i.Stats(); st.Cookies["passed"] != uint64(want) {
				t.Fatalf("cookies %+v, want %d passed", st.Cookies, want)
			}
			if !tc.exempt {
				return
			}
			// Its own rate refills (one a second); the budget does not here.
			clk.advance(time.Second)
			if v := run(i, engine.Outer, synFrom(cli4, 3000, 1).frame()).Verdict; v != engine.Bounce {
				t.Fatalf("the client's SYN a second later: %v, want bounce", v)
			}
			// The pass ends after its TTL.
			clk.advance(tc.ttl)
			i.rules.Load().challenge.tat.Store(int64(time.Hour) + clk.now()) // the budget stays spent
			if v := run(i, engine.Outer, synFrom(cli4, 3001, 1).frame()).Verdict; v != engine.Drop {
				t.Fatalf("the client's SYN after its pass expired: %v, want drop (over budget)", v)
			}
		})
	}
}
