package protect

import (
	"net/netip"

	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// Status is the protection's setup for `xskgate status`: the rules and
// stages in force, and the size of each table and map they use.
type Status struct {
	Enabled   bool         `json:"enabled"`
	Prefixes  []string     `json:"prefixes"`
	Allowlist int          `json:"allowlist"` // prefixes
	Blocklist int          `json:"blocklist"`
	Rules     []RuleStatus `json:"rules"`
	// SynProxy is the cookie SYN-ACK's shape and the challenge budget.
	SynProxy SynProxyStatus `json:"syn_proxy"`
	Tables   []TableStatus  `json:"tables"`
	// FirstLine is nil without an in-kernel first line.
	FirstLine *FirstLineStatus `json:"first_line,omitempty"`
	Workers   int              `json:"workers"`
}

// RuleStatus is one rule as compiled: the mode of each protection after
// inheritance from the rule's.
type RuleStatus struct {
	Name       string `json:"name"`
	Scope      string `json:"scope"`
	OutOfState string `json:"out_of_state"`
	SynFlood   string `json:"syn_flood"`
	Action     string `json:"action"`
	PerSource  bool   `json:"per_source"`
}

// SynProxyStatus is the cookie SYN-ACK and its budget.
type SynProxyStatus struct {
	MSS            uint16 `json:"mss"`
	WScale         uint8  `json:"wscale"`
	SACK           bool   `json:"sack_perm"`
	Window         uint16 `json:"window"`
	ChallengeRate  uint32 `json:"challenge_rate"`
	ChallengeBurst uint32 `json:"challenge_burst"`
	// Sources that passed a challenge: how long, and their own rate
	// outside the budget (PassedTTL 0: no exemption).
	PassedTTL   string `json:"passed_ttl"`
	PassedRate  uint32 `json:"passed_rate"`
	PassedBurst uint32 `json:"passed_burst"`
}

// TableStatus is one of the Inspector's tables: entries in use (-1: fixed
// slots, not counted) out of its capacity.
type TableStatus struct {
	Name     string `json:"name"`
	Entries  int    `json:"entries"`
	Capacity int    `json:"capacity"`
	What     string `json:"what"`
}

// FirstLineStatus is the first line's stages and maps.
type FirstLineStatus struct {
	Stages  []string          `json:"stages"`  // on
	Monitor []string          `json:"monitor"` // of those, only counting
	NoXDPTx bool              `json:"no_xdp_tx"`
	Maps    []xdpprog.MapInfo `json:"maps"`
	Error   string            `json:"error,omitempty"`
}

// Status reads the protection's setup. Safe while the gate runs.
func (i *Inspector) Status() Status {
	rs := i.rules.Load()
	st := Status{Enabled: rs.enabled, Allowlist: len(rs.allowlist), Blocklist: len(rs.blocklist), Workers: len(i.workers),
		SynProxy: SynProxyStatus{MSS: rs.proxy.mss, WScale: rs.proxy.wscale, SACK: rs.proxy.sack, Window: rs.proxy.window,
			ChallengeRate: rs.challengeRate, ChallengeBurst: rs.challengeBurst,
			PassedTTL: rs.passedTTL.String(), PassedRate: rs.passedRate, PassedBurst: rs.passedBurst}}
	for _, p := range rs.prefixes {
		st.Prefixes = append(st.Prefixes, p.String())
	}
	for _, r := range rs.rules {
		st.Rules = append(st.Rules, RuleStatus{Name: r.name, Scope: r.scope.String(), OutOfState: string(r.oosMode),
			SynFlood: string(r.synMode), Action: string(r.action), PerSource: r.perSource})
	}
	fs := i.table.Stats()
	retrans := 0 // allocated with the first rule whose action is retransmit
	if rt := i.retrans.Load(); rt != nil {
		retrans = len(rt.slots)
	}
	st.Tables = []TableStatus{
		{"flows", fs.Flows, fs.Capacity, "TCP flows tracked in both directions"},
		{"retransmit", -1, retrans, "first SYNs dropped by syn_flood action retransmit, awaiting their retry"},
		{"per_source", -1, len(i.srcTat), "per-source SYN meters (per_source_rate), hashed by rule and source"},
		{"passed", -1, len(i.passed), "sources that passed a challenge (syn_proxy.passed_ttl), hashed by source"},
	}
	f := i.first.Load()
	if f == nil {
		return st
	}
	on, mon := f.stages(rs)
	fl := &FirstLineStatus{Stages: xdpprog.StageNames(on), Monitor: xdpprog.StageNames(mon), NoXDPTx: f.noTx.Load()}
	maps, err := f.fl.Maps()
	if err != nil {
		fl.Error = err.Error()
	}
	for k := range maps {
		if maps[k].Entries < 0 && maps[k].Name == "xskgate_flows" {
			maps[k].Entries = int(f.flowsN.Load()) // as of the last sweep
		}
	}
	fl.Maps = maps
	st.FirstLine = fl
	return st
}

// FlowFilter selects flows for Flows. Zero fields match everything.
type FlowFilter struct {
	States []flow.State
	Dst    netip.Prefix // matches the original destination
	Limit  int
}

// Flows lists the tracked flows matching f (for `xskgate flows`).
func (i *Inspector) Flows(f FlowFilter) []flow.FlowInfo {
	var out []flow.FlowInfo
	i.table.Range(i.Now(), func(fi flow.FlowInfo) bool {
		if len(f.States) > 0 {
			ok := false
			for _, s := range f.States {
				ok = ok || s == fi.State
			}
			if !ok {
				return true
			}
		}
		if f.Dst.IsValid() && !f.Dst.Contains(fi.Dst) {
			return true
		}
		out = append(out, fi)
		return f.Limit <= 0 || len(out) < f.Limit
	})
	return out
}
