package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xskgate/xskgate/internal/integrity"
)

// IntegrityCollector exports the integrity checks' counters, read on scrape.
type IntegrityCollector struct {
	c                                   *integrity.Checks
	violations, enabled, lost, gaps, kd *prometheus.Desc
	unexplained, frozen, dumps          *prometheus.Desc
	evBytes, evMax, framesNot, filesNot *prometheus.Desc
}

// NewIntegrityCollector reads c on every scrape. Labels are bounded: the
// class and check names are fixed sets.
func NewIntegrityCollector(c *integrity.Checks) *IntegrityCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("xskgate_integrity_"+name, help, labels, nil)
	}
	return &IntegrityCollector{
		c:           c,
		violations:  d("violations_total", "Descriptor integrity violations by class.", "class", "check"),
		enabled:     d("check_enabled", "1 when the check group is on.", "check"),
		lost:        d("fill_lost_total", "FILL entries the kernel consumed without returning them on RX."),
		gaps:        d("seq_gaps_total", "Frames missing from the XDP metadata sequence."),
		kd:          d("kernel_drops_total", "rx_dropped + rx_ring_full growth over the same time."),
		unexplained: d("seq_gaps_unexplained_total", "Sequence gaps the kernel counters do not account for."),
		frozen:      d("frozen_workers", "Workers blocked by the freeze policy."),
		dumps:       d("dumps_total", "Flight-recorder dumps written."),
		evBytes:     d("evidence_bytes", "Bytes of evidence files in the dump directory, earlier runs' included."),
		evMax:       d("evidence_max_bytes", "The evidence byte cap (integrity.evidence_max_bytes): a file or frame that would go over it is not written."),
		framesNot: d("frames_not_captured_total",
			"Violating frames not written to the pcapng capture: reason=rate (over the class's capture_rate) or cap (evidence byte cap).",
			"class", "reason"),
		filesNot: d("evidence_not_written_total",
			"Evidence files not written: flight-recorder dumps within a second of the last (kind=flightrec, reason=interval), or at the byte cap (reason=cap; kind=flightrec or ftrace).",
			"kind", "reason"),
	}
}

func (x *IntegrityCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{x.violations, x.enabled, x.lost, x.gaps, x.kd, x.unexplained, x.frozen, x.dumps,
		x.evBytes, x.evMax, x.framesNot, x.filesNot} {
		ch <- d
	}
}

func (x *IntegrityCollector) Collect(ch chan<- prometheus.Metric) {
	counts := x.c.Counts()
	for cl := integrity.Class(0); cl < integrity.NumClasses; cl++ {
		if cl.String() == "" {
			continue
		}
		ch <- prometheus.MustNewConstMetric(x.violations, prometheus.CounterValue, float64(counts[cl]), cl.String(), cl.Check().String())
	}
	for ck := integrity.Check(0); ck < integrity.NumChecks; ck++ {
		v := 0.0
		if x.c.Enabled(ck) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(x.enabled, prometheus.GaugeValue, v, ck.String())
	}
	st := x.c.Stats()
	ch <- prometheus.MustNewConstMetric(x.lost, prometheus.CounterValue, float64(st.Lost))
	ch <- prometheus.MustNewConstMetric(x.gaps, prometheus.CounterValue, float64(st.SeqGaps))
	ch <- prometheus.MustNewConstMetric(x.kd, prometheus.CounterValue, float64(st.KernelDrops))
	ch <- prometheus.MustNewConstMetric(x.unexplained, prometheus.CounterValue, float64(st.Unexplained))
	ch <- prometheus.MustNewConstMetric(x.frozen, prometheus.GaugeValue, float64(st.Frozen))
	ch <- prometheus.MustNewConstMetric(x.dumps, prometheus.CounterValue, float64(st.Dumps))
	ev := x.c.Evidence()
	ch <- prometheus.MustNewConstMetric(x.evBytes, prometheus.GaugeValue, float64(ev.Bytes))
	ch <- prometheus.MustNewConstMetric(x.evMax, prometheus.GaugeValue, float64(ev.MaxBytes))
	for cl := integrity.Class(0); cl < integrity.NumClasses; cl++ {
		ch <- prometheus.MustNewConstMetric(x.framesNot, prometheus.CounterValue, float64(ev.FramesRateLimited[cl]), cl.String(), "rate")
		ch <- prometheus.MustNewConstMetric(x.framesNot, prometheus.CounterValue, float64(ev.FramesCapped[cl]), cl.String(), "cap")
	}
	ch <- prometheus.MustNewConstMetric(x.filesNot, prometheus.CounterValue, float64(ev.DumpsInterval), "flightrec", "interval")
	ch <- prometheus.MustNewConstMetric(x.filesNot, prometheus.CounterValue, float64(ev.DumpsCapped), "flightrec", "cap")
	ch <- prometheus.MustNewConstMetric(x.filesNot, prometheus.CounterValue, float64(ev.TraceCapped), "ftrace", "cap")
}
