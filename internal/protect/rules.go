package protect

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// ruleset is a compiled Config. It is immutable once published through
// Inspector.rules except for its meters, which are atomics; Reload swaps
// the whole set, so a batch sees one consistent version.
type ruleset struct {
	enabled                        bool
	prefixes, allowlist, blocklist []netip.Prefix
	rules                          []*rule // most specific scope first
	proxy                          proxyParams
	challenge                      limiter // cookie SYN-ACK budget, all scopes
	logLimit                       limiter
	logQuiet                       bool
	challengeRate, challengeBurst  uint32
	firstLine                      FirstLineConfig // defaults applied
	onFull                         TableFullAction // default applied
	// rtMaxAll is the longest retransmit window of any rule: a recorded
	// first SYN older than that can match no rule (retrans.go).
	rtMaxAll time.Duration
}

type proxyParams struct {
	mss    uint16
	wscale uint8
	sack   bool
	window uint16
}

type rule struct {
	name    string
	scope   netip.Prefix
	idx     int
	oosMode Mode
	synMode Mode
	action  SynAction
	// perSource enables the per-source SYN meters (Inspector.srcTat).
	perSource    bool
	srcRate      rate
	rtMin, rtMax time.Duration
	oos, syn     meter
	stats        *ruleStats
}

// ruleStats outlive reloads: they are looked up by rule name.
type ruleStats struct {
	n [numVerdicts][numVerdicts]atomic.Uint64 // verdict, outcome
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// match returns the most specific rule whose scope contains dst, or nil.
func (rs *ruleset) match(dst netip.Addr) *rule {
	for _, r := range rs.rules {
		if r.scope.Contains(dst) {
			return r
		}
	}
	return nil
}
