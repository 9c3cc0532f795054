package bench

// The report: per variant min, median and max, CPU cost, and the ratios
// between paths, with the load average the figures were taken under.

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratios compares two paths measured in the same rounds: the ratio of the
// medians, and the per-round ratios (median, min-max).
func ratios(a, b []float64) string {
	var per []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			per = append(per, a[i]/b[i])
		}
	}
	if len(per) == 0 || median(b) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f (medians); per round median %.2f, %.2f-%.2f", median(a)/median(b), median(per), slices.Min(per), slices.Max(per))
}

// loadavg is /proc/loadavg's first three fields: other work on the
// machine shows in the figures.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func rateString(r float64) string {
	if r == 0 {
		return "the generator's full speed"
	}
	return fmt.Sprintf("%.3f Mpps", r/1e6)
}

func report(w io.Writer, vs []Variant, res []*Result, o Options) {
	var fwd, floods []*Result
	var ceiling []int
	for i, r := range res {
		switch v := vs[i]; {
		case v.Flood != "":
			// reportFloods
		case v.Ceiling:
			ceiling = append(ceiling, i)
		case v.AckFlood:
			floods = append(floods, r)
		default:
			fwd = append(fwd, r)
		}
	}
	tcpHdr := ""
	for _, p := range o.TCPStreams {
		tcpHdr += fmt.Sprintf(" %9s", fmt.Sprintf("TCP -P%d", p))
	}
	if len(fwd) > 0 {
		fmt.Fprintf(w, "\n%-26s %8s %8s %8s %8s %8s %9s %8s %15s%s\n", "path", "min Mpps", "median", "max", "Gbit/s", "CPU busy", "ns/pkt", "eng drop", "loss @ 50%", tcpHdr)
	}
	for _, r := range fwd {
		s := slices.Clone(r.PPS)
		slices.Sort(s)
		var drops uint64
		for _, d := range r.EngineDrop {
			drops += d
		}
		nsPkt := make([]float64, 0, len(r.PPS))
		for i, p := range r.PPS {
			if p > 0 && i < len(r.Busy) {
				nsPkt = append(nsPkt, r.Busy[i]*1e9/p)
			}
		}
		tcp := ""
		for i := range o.TCPStreams {
			switch {
			case r.TCPErr != "" && (i >= len(r.TCPGbps) || r.TCPGbps[i] == 0):
				tcp += fmt.Sprintf(" %9s", "error")
			case i >= len(r.TCPGbps):
				tcp += fmt.Sprintf(" %9s", "-")
			default:
				tcp += fmt.Sprintf(" %9.2f", r.TCPGbps[i])
			}
		}
		loss := "-"
		if r.RateBelow > 0 {
			loss = fmt.Sprintf("%.3f%% @%.2f", r.LossBelow*100, r.RateBelow/1e6)
		}
		fmt.Fprintf(w, "%-26s %8.3f %8.3f %8.3f %8.3f %7.0f%% %9.0f %8d %15s%s\n", r.Name, s[0]/1e6, median(s)/1e6, s[len(s)-1]/1e6,
			median(s)*o.Size.FrameBytes()*8/1e9, median(r.Busy)*100, median(nsPkt), drops, loss, tcp)
		if r.TCPErr != "" {
			fmt.Fprintf(w, "  tcp: %s\n", r.TCPErr)
		}
	}
	fmt.Fprintf(w, "(Gbit/s: Ethernet frames without FCS at the median rate; CPU busy: CPU %d, all tasks and softirqs, median; ns/pkt: its busy time per delivered frame, median of the runs)\n", o.GateCPU)
	if len(fwd) >= 2 && median(fwd[0].PPS) > 0 {
		for _, r := range fwd[1:] {
			fmt.Fprintf(w, "ratio %s / %s: %s\n", r.Name, fwd[0].Name, ratios(r.PPS, fwd[0].PPS))
		}
	}
	for i, v := range vs {
		if !v.External {
			continue
		}
		for _, r := range fwd {
			if strings.HasPrefix(r.Name, "xskgate") {
				fmt.Fprintf(w, "ratio %s / %s: %s\n", r.Name, res[i].Name, ratios(r.PPS, res[i].PPS))
			}
		}
	}
	for _, c := range ceiling {
		r, v := res[c], vs[c]
		fmt.Fprintf(w, "%s: median %.3f Mpps reached the %s sink on outer (min %.3f, max %.3f; the generator counted median %.3f Mpps); the sink runs on the generator's core (veth receives on the sender's CPU), as the paths' XDP front end does\n",
			r.Name, median(r.PPS)/1e6, sinkName(v), slices.Min(r.PPS)/1e6, slices.Max(r.PPS)/1e6, median(r.Offered)/1e6)
	}
	for _, r := range floods {
		fmt.Fprintf(w, "%s: the gate handled (and dropped) median %.3f Mpps of out-of-state ACKs (min %.3f, max %.3f); median %.4f Mpps reached the server\n",
			r.Name, median(r.Handled)/1e6, slices.Min(r.Handled)/1e6, slices.Max(r.Handled)/1e6, median(r.PPS)/1e6)
	}
	// The cost of the checks and of the protection, against xskgate alone.
	by := map[string]*Result{}
	for _, r := range res {
		by[r.Name] = r
	}
	if on, off := by["xskgate"], by["xskgate-nochecks"]; on != nil && off != nil && median(off.PPS) > 0 {
		fmt.Fprintf(w, "integrity checks: %.1f%% of throughput (xskgate %.3f vs no checks %.3f Mpps, medians)\n",
			100*(1-median(on.PPS)/median(off.PPS)), median(on.PPS)/1e6, median(off.PPS)/1e6)
	}
	if on, off := by["xskgate"], by["xskgate-nocarrier"]; on != nil && off != nil && median(off.PPS) > 0 {
		fmt.Fprintf(w, "XDP record carrier (the default, vs none): %.1f%% of throughput (%.3f vs %.3f Mpps, medians)\n",
			100*(1-median(on.PPS)/median(off.PPS)), median(on.PPS)/1e6, median(off.PPS)/1e6)
	}
	if on, off := by["xskgate+protection"], by["xskgate"]; on != nil && off != nil && median(off.PPS) > 0 {
		fmt.Fprintf(w, "TCP protection stage: %.1f%% of throughput (%.3f vs %.3f Mpps, medians; the UDP test frames are parsed and passed)\n",
			100*(1-median(on.PPS)/median(off.PPS)), median(on.PPS)/1e6, median(off.PPS)/1e6)
	}
}
