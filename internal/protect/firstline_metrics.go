package protect

import "github.com/prometheus/client_golang/prometheus"

var (
	descFirstLine = prometheus.NewDesc("xskgate_first_line_packets_total",
		"What the in-kernel first line did, by stage and action: drop, would_drop (monitor), pass (allowlist), answered (cookie SYN-ACK by XDP_TX), limited (over the challenge budget), to_user_space (within the budget, for the proxy to answer where XDP_TX fails), no_fit, not_parsed (on to user space).",
		[]string{"stage", "action"}, nil)
	descFirstLineStage = prometheus.NewDesc("xskgate_first_line_stage",
		"1 per first-line stage that is on, labelled with its mode (mitigate or monitor).", []string{"stage", "mode"}, nil)
	descFirstLineMaps = prometheus.NewDesc("xskgate_first_line_entries",
		"Entries in the first line's maps: flows (as of the last sweep), penalized sources.", []string{"map"}, nil)
	descFirstLineFlagged = prometheus.NewDesc("xskgate_first_line_scope_flags",
		"Scopes the first line currently acts for: 1 = out of state, 2 = challenge (a bit set), by scope.", []string{"scope"}, nil)
	descFirstLineErrors = prometheus.NewDesc("xskgate_first_line_errors_total",
		"Map updates of the first line that failed.", nil, nil)
	descFirstLineNoTx = prometheus.NewDesc("xskgate_first_line_xdp_tx_broken",
		"1 when the cookie stage stopped answering in XDP because the outer driver fails XDP_TX (SYNs within the challenge budget go to the user-space proxy).", nil, nil)
)

// firstLineDescs are the first line's metrics, described always.
var firstLineDescs = []*prometheus.Desc{descFirstLine, descFirstLineStage, descFirstLineMaps, descFirstLineFlagged,
	descFirstLineErrors, descFirstLineNoTx}

// collectFirstLine exports the first line's counters, if there is one.
func (c collector) collectFirstLine(ch chan<- prometheus.Metric) {
	st, ok := c.i.FirstLineStats()
	if !ok {
		return
	}
	cnt := func(v uint64, stage, action string) {
		ch <- prometheus.MustNewConstMetric(descFirstLine, prometheus.CounterValue, float64(v), stage, action)
	}
	cnt(st.AllowPass, "allowlist", "pass")
	cnt(st.BlockDrop, "blocklist", "drop")
	cnt(st.BlockWould, "blocklist", "would_drop")
	cnt(st.PenaltyDrop, "penalty_box", "drop")
	cnt(st.PenaltyWould, "penalty_box", "would_drop")
	cnt(st.OutOfStateDrop, "out_of_state", "drop")
	cnt(st.OutOfStateWould, "out_of_state", "would_drop")
	cnt(st.CookieSent, "syn_cookie", "answered")
	cnt(st.CookieWould, "syn_cookie", "would_answer")
	cnt(st.CookieLimited, "syn_cookie", "limited")
	cnt(st.CookieToUser, "syn_cookie", "to_user_space")
	cnt(st.CookiePassed, "syn_cookie", "passed")
	cnt(st.CookieNoFit, "syn_cookie", "no_fit")
	cnt(st.NotParsed, "parse", "not_parsed")
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range st.StagesOn {
		mode := "mitigate"
		if st.MonitorOn[s] {
			mode = "monitor"
		}
		gauge(descFirstLineStage, 1, s, mode)
	}
	gauge(descFirstLineMaps, float64(st.Flows), "flows")
	gauge(descFirstLineMaps, float64(st.Penalized), "penalty_box")
	for scope, fl := range st.Flagged {
		gauge(descFirstLineFlagged, float64(fl&3), scope)
	}
	ch <- prometheus.MustNewConstMetric(descFirstLineErrors, prometheus.CounterValue, float64(st.Errors))
	noTx := 0.0
	if st.NoXDPTx {
		noTx = 1
	}
	gauge(descFirstLineNoTx, noTx)
}
