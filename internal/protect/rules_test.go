package protect

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestPrefixTriesMatchScan: the tries answer every question as the
// linear scans they replaced did, on random IPv4 and IPv6 prefixes of
// every length (nested, overlapping, duplicate scopes) and addresses
// inside and outside them: membership by netip.Prefix.Contains, the rule
// by most specific scope, first in the file among equal scopes.
func TestPrefixTriesMatchScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0x20, 0x01, 0, 2 // 2001:2::/32, so that prefixes nest
			for k := 4; k < 16; k++ {
				b[k] = byte(rng.IntN(4))
			}
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(4)), byte(rng.IntN(8))})
	}
	pfx := func() netip.Prefix {
		v6 := rng.IntN(2) == 0
		bits := 15 + rng.IntN(18)
		if v6 {
			bits = 32 + rng.IntN(97)
		}
		return netip.PrefixFrom(addr(v6), bits).Masked()
	}
	for round := range 50 {
		var c Config
		for range 1 + rng.IntN(40) {
			c.Prefixes = append(c.Prefixes, pfx())
			c.Allowlist = append(c.Allowlist, pfx())
			c.Blocklist = append(c.Blocklist, pfx())
		}
		for k := range rng.IntN(30) {
			sc := c.Prefixes[rng.IntN(len(c.Prefixes))]
			if rng.IntN(3) == 0 {
				sc = netip.PrefixFrom(sc.Addr(), min(sc.Bits()+rng.IntN(8), sc.Addr().BitLen())).Masked()
			}
			c.Rules = append(c.Rules, Rule{Name: string(rune('a'+k%26)) + string(rune('0'+k/26)), Scope: sc, Mode: ModeMitigate})
		}
		rs, err := compile(&c)
		if err != nil {
			t.Fatal(err)
		}
		scan := func(ps []netip.Prefix, a netip.Addr) bool {
			for _, p := range ps {
				if p.Contains(a) {
					return true
				}
			}
			return false
		}
		for range 200 {
			a := addr(rng.IntN(2) == 0)
			if rs.protects(a) != scan(rs.prefixes, a) || rs.allowed(a) != scan(rs.allowlist, a) || rs.blocked(a) != scan(rs.blocklist, a) {
				t.Fatalf("round %d: membership of %s differs from the scan", round, a)
			}
			var want *rule
			for _, r := range rs.rules { // most specific first, file order among equals
				if r.scope.Contains(a) {
					want = r
					break
				}
			}
			if got := rs.match(a); got != want {
				t.Fatalf("round %d: %s matched %v, the scan %v", round, a, got, want)
			}
		}
	}
}
