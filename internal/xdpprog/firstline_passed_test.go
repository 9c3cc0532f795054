package xdpprog

import (
	"net/netip"
	"testing"
)

// TestFirstLinePassedSources: while the challenge budget is spent by a
// flood, a source that passed a challenge is answered all the same, up
// to its own burst; then it competes for the budget like any other. An
// expired entry exempts nothing, and the flood stays limited. IPv4 and
// IPv6, with XDP_TX and with the answers left to user space.
func TestFirstLinePassedSources(t *testing.T) {
	const burst, passedBurst = 2, 3
	for _, mode := range []struct {
		name      string
		userSpace bool
		answered  uint32 // what the program returns for a SYN answered
	}{{"xdp_tx", false, xdpTxRet}, {"user_space", true, xdpPassRet}} {
		t.Run(mode.name, func(t *testing.T) {
			p, f := cookieProgram(t, 0, budgetRate, burst, mode.userSpace)
			cfg := cookieConfig(budgetRate, burst, mode.userSpace)
			cfg.PassedInterval, cfg.PassedTolerance = gcra(budgetRate, passedBurst)
			cfg.HasPassed = true
			must(t, f.Configure(cfg))
			k := 0
			syn := func(fam family, from bool) uint32 {
				t.Helper()
				k++
				s := linuxSYN(fam, k)
				if !from {
					s.src = fam.other
				}
				ret, _ := runFrame(t, p, tcpFrame(t, s))
				return ret
			}
			// The flood spends the budget (burst + 1, and what the test's
			// runtime adds at one a second).
			for range 3 * burst {
				syn(families[0], false)
			}
			for _, fam := range families {
				if ret := syn(fam, false); ret != xdpDropRet {
					t.Fatalf("%s: flood SYN returned %d after the budget, want XDP_DROP", fam.name, ret)
				}
				if ret := syn(fam, true); ret != xdpDropRet {
					t.Fatalf("%s: SYN of a source that has not passed returned %d, want XDP_DROP (over budget)", fam.name, ret)
				}
				must(t, f.Pass(fam.client, ktime(t)-1))
				if ret := syn(fam, true); ret != xdpDropRet {
					t.Fatalf("%s: SYN of a source whose pass expired returned %d, want XDP_DROP", fam.name, ret)
				}
			}
			start := ktime(t)
			before, _ := f.Counters()
			for _, fam := range families {
				must(t, f.Pass(fam.client, ktime(t)+60e9))
			}
			answered := map[string]int{}
			for _, fam := range families {
				for range 3 * passedBurst {
					switch ret := syn(fam, true); ret {
					case mode.answered:
						answered[fam.name]++
					case xdpDropRet:
					default:
						t.Fatalf("%s: passed source's SYN returned %d", fam.name, ret)
					}
				}
				if ret := syn(fam, false); ret != xdpDropRet {
					t.Fatalf("%s: flood SYN returned %d while a passed source is answered, want XDP_DROP", fam.name, ret)
				}
			}
			elapsed := float64(ktime(t)-start) / 1e9
			c, _ := f.Counters()
			most := passedBurst + 1 + int(elapsed*budgetRate) + 1
			for _, fam := range families {
				if n := answered[fam.name]; n < passedBurst+1 || n > most {
					t.Errorf("%s: passed source answered %d of %d SYNs, want its burst + 1 (%d) and at most %d", fam.name, n, 3*passedBurst, passedBurst+1, most)
				}
			}
			if got := c.CookiePassed - before.CookiePassed; got != uint64(answered["ipv4"]+answered["ipv6"]) {
				t.Errorf("counted %d passed, answered %d", got, answered["ipv4"]+answered["ipv6"])
			}
			if n := f.PassedSources(); n != 2 {
				t.Errorf("PassedSources = %d, want 2", n)
			}
			// Passing again renews the pass, not the rate: the burst
			// spent stays spent.
			for _, fam := range families {
				must(t, f.Pass(fam.client, ktime(t)+60e9))
				if ret := syn(fam, true); ret != xdpDropRet {
					t.Errorf("%s: SYN after the pass was renewed returned %d, want XDP_DROP (its rate spent)", fam.name, ret)
				}
			}
			// Until the configuration says a source passed, the map is not
			// looked up.
			fresh := cfg
			fresh.HasPassed = false
			must(t, f.Configure(fresh))
			clear(answered)
			for _, fam := range families {
				must(t, f.Pass(fam.other, ktime(t)+60e9)) // a pass with its whole burst
				if ret := syn(fam, false); ret != xdpDropRet {
					t.Errorf("%s: passed SYN returned %d with HasPassed off, want XDP_DROP (over budget)", fam.name, ret)
				}
			}
		})
	}
}

// TestFirstLinePassedTotal: all passed sources together get no more than
// the total GCRA outside the spent challenge budget, whatever each one's
// own rate allows.
func TestFirstLinePassedTotal(t *testing.T) {
	const totalBurst = 1
	p, f := cookieProgram(t, 0, budgetRate, 0, false)
	cfg := cookieConfig(budgetRate, 0, false)
	cfg.PassedInterval, cfg.PassedTolerance = gcra(budgetRate, 100)
	cfg.PassedAllInterval, cfg.PassedAllTolerance = gcra(budgetRate, totalBurst)
	cfg.HasPassed = true
	must(t, f.Configure(cfg))
	k := 0
	send := func(src netip.Addr, fam family) uint32 {
		k++
		s := linuxSYN(fam, k)
		s.src = src
		ret, _ := runFrame(t, p, tcpFrame(t, s))
		return ret
	}
	fam := families[0]
	for range 5 { // spend the challenge budget
		send(fam.other, fam)
	}
	start := ktime(t)
	for _, fam := range families {
		must(t, f.Pass(fam.client, ktime(t)+60e9))
	}
	answered := 0
	for range 5 {
		for _, fam := range families {
			if send(fam.client, fam) == xdpTxRet {
				answered++
			}
		}
	}
	elapsed := float64(ktime(t)-start) / 1e9
	if most := totalBurst + 1 + int(elapsed*budgetRate) + 1; answered < totalBurst+1 || answered > most {
		t.Fatalf("two passed sources got %d SYN-ACKs with the budget spent, want the total's burst + 1 (%d), at most %d", answered, totalBurst+1, most)
	}
}
