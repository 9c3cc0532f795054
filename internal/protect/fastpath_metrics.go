package protect

import "github.com/prometheus/client_golang/prometheus"

var (
	descFastPackets = prometheus.NewDesc("xskgate_fast_path_packets_total",
		"Segments of offloaded flows the kernel fast path redirected, by direction (in: outer to inner).", []string{"dir"}, nil)
	descFastBytes = prometheus.NewDesc("xskgate_fast_path_bytes_total",
		"Bytes (frames as the tc program saw them) of offloaded flows the fast path redirected, by direction.", []string{"dir"}, nil)
	descFastLost = prometheus.NewDesc("xskgate_fast_path_dropped_total",
		"Segments the fast path dropped, by reason: lost (XDP passed it, its flow left the map before the tc redirect), translate (a SYN-proxied flow's segment it could not rewrite). The sender retransmits them.", []string{"reason"}, nil)
	descFastFlows = prometheus.NewDesc("xskgate_fast_path_flows",
		"Flows in the fast path's map (as of the last sweep), and its capacity.", []string{"what"}, nil)
	descFastEvents = prometheus.NewDesc("xskgate_fast_path_flows_total",
		"Flows offloaded, released (back to user space: closing, or a reload), and refused by a full map.", []string{"event"}, nil)
	descFastErrors = prometheus.NewDesc("xskgate_fast_path_errors_total",
		"Fast path map operations that failed.", nil, nil)
)

var fastPathDescs = []*prometheus.Desc{descFastPackets, descFastBytes, descFastLost, descFastFlows, descFastEvents, descFastErrors}

// collectFastPath exports the fast path's counters, if there is one.
func (c collector) collectFastPath(ch chan<- prometheus.Metric) {
	st, ok := c.i.FastPathStats()
	if !ok {
		return
	}
	m := func(d *prometheus.Desc, t prometheus.ValueType, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v), labels...)
	}
	m(descFastPackets, prometheus.CounterValue, st.InPackets, "in")
	m(descFastPackets, prometheus.CounterValue, st.OutPackets, "out")
	m(descFastBytes, prometheus.CounterValue, st.InBytes, "in")
	m(descFastBytes, prometheus.CounterValue, st.OutBytes, "out")
	m(descFastLost, prometheus.CounterValue, st.Lost, "lost")
	m(descFastLost, prometheus.CounterValue, st.TranslateErrors, "translate")
	m(descFastFlows, prometheus.GaugeValue, uint64(st.Flows), "offloaded")
	m(descFastFlows, prometheus.GaugeValue, uint64(st.Capacity), "capacity")
	m(descFastEvents, prometheus.CounterValue, st.Offloaded, "offloaded")
	m(descFastEvents, prometheus.CounterValue, st.Released, "released")
	m(descFastEvents, prometheus.CounterValue, st.Full, "full")
	m(descFastErrors, prometheus.CounterValue, st.Errors)
}
