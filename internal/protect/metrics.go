package protect

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

// Decision is one non-zero cell of the decision counters.
type Decision struct {
	Dir, Protection, Reason, Verdict, Outcome string
	N                                         uint64
}

// Stats is a snapshot of the Inspector's counters, summed over workers.
type Stats struct {
	Decisions []Decision
	Malformed map[string]uint64 // by packet.Error name
	Bypass    map[string]uint64 // frames not judged: non_ip, non_tcp, unprotected
	Cookies   map[string]uint64 // sent, valid, invalid, rate_limited
	Proxy     map[string]uint64 // SYN proxy events (proxyNames)
	Retrans   map[string]uint64 // retransmit action's table (retransNames)
	Rules     map[string][numVerdicts][numVerdicts]uint64
}

// Count sums the decisions matching reason, verdict and outcome; an empty
// string matches anything.
func (s *Stats) Count(reason, verdict, outcome string) uint64 {
	var n uint64
	for _, d := range s.Decisions {
		if (reason == "" || d.Reason == reason) && (verdict == "" || d.Verdict == verdict) &&
			(outcome == "" || d.Outcome == outcome) {
			n += d.N
		}
	}
	return n
}

// Stats sums the workers' counters.
func (i *Inspector) Stats() Stats {
	var dec [2][numReasons][numVerdicts][numVerdicts]uint64
	s := Stats{Malformed: map[string]uint64{}, Bypass: map[string]uint64{}, Cookies: map[string]uint64{},
		Proxy: map[string]uint64{}, Retrans: map[string]uint64{}, Rules: map[string][numVerdicts][numVerdicts]uint64{}}
	for wi := range i.workers {
		c := &i.workers[wi].c
		for d := range c.decisions {
			for r := range c.decisions[d] {
				for v := range c.decisions[d][r] {
					for o := range c.decisions[d][r][v] {
						dec[d][r][v][o] += c.decisions[d][r][v][o].load()
					}
				}
			}
		}
		for e := range c.malformed {
			if n := c.malformed[e].load(); n != 0 {
				s.Malformed[packet.ErrorName(packet.Error(e))] += n
			}
		}
		for b := range c.bypass {
			if n := c.bypass[b].load(); n != 0 {
				s.Bypass[bypassNames[b]] += n
			}
		}
		for k := range c.cookies {
			s.Cookies[cookieNames[k]] += c.cookies[k].load()
		}
		for k := range c.proxy {
			s.Proxy[proxyNames[k]] += c.proxy[k].load()
		}
		for k := range c.retrans {
			s.Retrans[retransNames[k]] += c.retrans[k].load()
		}
	}
	for d := range dec {
		for r := range dec[d] {
			for v := range dec[d][r] {
				for o, n := range dec[d][r][v] {
					if n == 0 {
						continue
					}
					s.Decisions = append(s.Decisions, Decision{Dir: flow.Dir(d).String(),
						Protection: reason(r).protection(), Reason: reason(r).String(),
						Verdict: verdict(v).String(), Outcome: verdict(o).String(), N: n})
				}
			}
		}
	}
	i.reloadMu.Lock()
	for name, st := range i.ruleStats {
		var a [numVerdicts][numVerdicts]uint64
		for v := range a {
			for o := range a[v] {
				a[v][o] = st.n[v][o].Load()
			}
		}
		s.Rules[name] = a
	}
	i.reloadMu.Unlock()
	return s
}

const ns = "xskgate_"

var (
	descDecisions = prometheus.NewDesc(ns+"tcp_decisions_total",
		"TCP segments judged by the protection stage: verdict is what protection calls for, outcome what was done (they differ in monitor mode or below threshold).",
		[]string{"dir", "protection", "reason", "verdict", "outcome"}, nil)
	descMalformed = prometheus.NewDesc(ns+"malformed_frames_total",
		"Frames that failed to parse, by parser error (dropped while protection is enabled).", []string{"error"}, nil)
	descBypass = prometheus.NewDesc(ns+"protect_bypass_total",
		"Frames the TCP protection stage passed without judging them.", []string{"class"}, nil)
	descCookies = prometheus.NewDesc(ns+"syncookies_total",
		"SYN proxy cookies: sent (SYN-ACK bounced), valid (ACK turned into a SYN to the server), invalid (pure ACK with no flow and no valid cookie while challenging), rate_limited (SYN dropped: challenge budget spent), passed (SYN of a source that passed a challenge, answered outside the budget).",
		[]string{"result"}, nil)
	descProxy = prometheus.NewDesc(ns+"synproxy_events_total",
		"SYN proxy events: window_update (the ACK opening the client's window once the server answered, sent in a spare frame), window_update_no_frame (no spare frame: the client's zero-window probe opens it later), syn_resent (a client segment came while the server had not answered: the SYN to the server went again), icmp_translated (an ICMP error quoting a proxied segment got its sequence number back).",
		[]string{"event"}, nil)
	descRetrans = prometheus.NewDesc(ns+"syn_retransmit_total",
		"The retransmit action's table of dropped first SYNs: recorded, matched (retransmission admitted), table_full (first SYN not recorded: its bucket holds only entries still in their window).",
		[]string{"result"}, nil)
	descRule = prometheus.NewDesc(ns+"rule_decisions_total",
		"Decisions attributed to each configured rule.", []string{"rule", "verdict", "outcome"}, nil)
	descReloads = prometheus.NewDesc(ns+"config_reloads_total",
		"Protection configuration loads and reloads.", []string{"result"}, nil)
	descLastReload = prometheus.NewDesc(ns+"config_last_reload_success_timestamp_seconds",
		"Unix time of the last successful protection configuration load.", nil, nil)
	descFlows = prometheus.NewDesc(ns+"flows",
		"Tracked TCP flows by conntrack state.", []string{"state"}, nil)
	descFlowCap = prometheus.NewDesc(ns+"flow_table_capacity",
		"Flow table entries allocated.", nil, nil)
	descFlowEvents = prometheus.NewDesc(ns+"flow_events_total",
		"Flow table events: insert, eviction, table_full, expired, reset.", []string{"event"}, nil)
)

type collector struct{ i *Inspector }

// Collector exports the Inspector's counters and the flow table's
// statistics. Every label set is bounded by constants or by the rule
// names in the configuration; no address, port or flow appears.
func (i *Inspector) Collector() prometheus.Collector { return collector{i} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDecisions, descMalformed, descBypass, descCookies, descProxy, descRetrans, descRule,
		descReloads, descLastReload, descFlows, descFlowCap, descFlowEvents} {
		ch <- d
	}
	for _, d := range append(firstLineDescs, fastPathDescs...) {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.collectFirstLine(ch)
	c.collectFastPath(ch)
	s := c.i.Stats()
	cnt := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, d := range s.Decisions {
		cnt(descDecisions, d.N, d.Dir, d.Protection, d.Reason, d.Verdict, d.Outcome)
	}
	for e := packet.Error(1); e < packet.NumErrors; e++ {
		cnt(descMalformed, s.Malformed[e.Name()], e.Name())
	}
	for _, b := range bypassNames {
		cnt(descBypass, s.Bypass[b], b)
	}
	for _, k := range cookieNames {
		cnt(descCookies, s.Cookies[k], k)
	}
	for _, k := range proxyNames {
		cnt(descProxy, s.Proxy[k], k)
	}
	for _, k := range retransNames {
		cnt(descRetrans, s.Retrans[k], k)
	}
	for name, a := range s.Rules {
		for v := range a {
			for o, n := range a[v] {
				if n != 0 {
					cnt(descRule, n, name, verdict(v).String(), verdict(o).String())
				}
			}
		}
	}
	cnt(descReloads, c.i.reloads[0].Load(), "success")
	cnt(descReloads, c.i.reloads[1].Load(), "failure")
	ch <- prometheus.MustNewConstMetric(descLastReload, prometheus.GaugeValue, float64(c.i.lastOK.Load()))
	fs := c.i.table.Stats()
	for st, n := range fs.States {
		if flow.State(st) == flow.StateNone {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(n), flow.State(st).String())
	}
	ch <- prometheus.MustNewConstMetric(descFlowCap, prometheus.GaugeValue, float64(fs.Capacity))
	cnt(descFlowEvents, fs.Inserts, "insert")
	cnt(descFlowEvents, fs.Evictions, "eviction")
	cnt(descFlowEvents, fs.TableFull, "table_full")
	cnt(descFlowEvents, fs.Expired, "expired")
	cnt(descFlowEvents, fs.Reset, "reset")
}
