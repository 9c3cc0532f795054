package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/ethtool"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// FloodSample is what became of a flood in one run's window, per second,
// plus what happened since the flood began.
type FloodSample struct {
	Offered float64 // frames/s the generator sent
	// In XDP (the first line): dropped (out of state, lists, penalty box,
	// over the challenge budget) and answered with a cookie SYN-ACK
	// (XDP_TX; the driver may still fail to send it: TxErrors).
	XDPDrop, XDPTx float64
	// XDPLimited: of XDPDrop, SYNs over the challenge budget.
	XDPLimited float64
	// In user space: frames the gate's workers received and judged, of
	// which dropped and answered with a cookie SYN-ACK.
	User, UserDrop, UserCookie float64
	// Lost: dropped by the kernel at the gate's AF_XDP socket (no FILL
	// buffer, RX ring full) before anyone judged them.
	Lost float64
	// Server: frames that reached the server's eth0.
	Server float64
	// ClientRx: frames the client's eth0 received (the SYN-ACKs), and
	// TxErrors: frames outer's driver failed to send with XDP_TX.
	ClientRx, TxErrors float64
	// Since the flood began (warm-up included): cookie SYN-ACKs XDP made,
	// of those the driver failed to send, and whether the cookie stage
	// turned itself off for it (protect's checkTx).
	XDPTxTotal, TxErrTotal uint64
	NoXDPTx                bool
	// WorkerCPU and GenCPU: the share of the window the gate's worker
	// thread and the generator's thread spent on a CPU (user + system,
	// NAPI work done in the generator's send calls included).
	WorkerCPU, GenCPU float64
	// Ethtool: the veth counters of outer and of the client's eth0 that
	// tell where XDP_TX frames went, over the window (extras only).
	Ethtool string
}

// Disposed is what the gate got rid of per second: dropped or answered,
// in XDP or in user space.
func (f FloodSample) Disposed() float64 { return f.XDPDrop + f.XDPTx + f.UserDrop + f.UserCookie }

func (f FloodSample) String() string {
	lim := ""
	if f.XDPLimited > 0 {
		lim = fmt.Sprintf(" (%.3f over the cookie budget)", f.XDPLimited/1e6)
	}
	s := fmt.Sprintf("offered %.3f Mpps: XDP dropped %.3f%s, answered %.3f; user space judged %.3f (dropped %.3f, answered %.3f); lost at the socket %.3f; server %.4f Mpps; worker thread %.0f%% of a CPU, generator %.0f%%",
		f.Offered/1e6, f.XDPDrop/1e6, lim, f.XDPTx/1e6, f.User/1e6, f.UserDrop/1e6, f.UserCookie/1e6, f.Lost/1e6, f.Server/1e6,
		100*f.WorkerCPU, 100*f.GenCPU)
	if f.XDPTxTotal > 0 || f.NoXDPTx {
		s += fmt.Sprintf("; since the flood began XDP sent %d cookie SYN-ACKs, the driver failed %d (cookie stage off: %v); client eth0 rx %.3f Mpps",
			f.XDPTxTotal, f.TxErrTotal, f.NoXDPTx, f.ClientRx/1e6)
	}
	if f.Ethtool != "" {
		s += "; ethtool " + f.Ethtool
	}
	return s
}

// floodSnap is the counters a flood sample is made of, at one instant.
type floodSnap struct {
	sent                     uint64
	fl                       xdpprog.FirstLineCounters
	noTx                     bool
	usDrop, usCookie, gateRx uint64
	lost, txErr              uint64
	clientRx                 uint64
	workerTicks, genTicks    uint64            // CPU time of the threads pinned to GateCPU, GenCPU
	eth                      map[string]uint64 // extras: outer's and the client's veth counters
}

func (b *bencher) floodSnap(v Variant, d *dut, gen source) (floodSnap, error) {
	l := b.l
	s := floodSnap{sent: gen.Sent(), gateRx: gateRx(d.g),
		workerTicks: pinnedTicks(b.o.GateCPU), genTicks: pinnedTicks(b.o.GenCPU)}
	if d.insp != nil {
		st := d.insp.Stats()
		s.usDrop = st.Count("", "", "drop")
		s.usCookie = st.Cookies["sent"]
		if fl, ok := d.insp.FirstLineStats(); ok {
			s.fl, s.noTx = fl.FirstLineCounters, fl.NoXDPTx
		}
	}
	if d.g != nil {
		for _, sk := range d.g.Outer {
			if st, err := sk.Stats(); err == nil {
				s.lost += st.RxDropped + st.RxRingFull
			}
		}
	}
	outer, err := ethtoolStats(l, l.GateNS, lab.OuterName)
	if err != nil {
		return s, err
	}
	s.txErr = sumKeys(outer, "xdp_tx_errors")
	if s.clientRx, _, err = l.LinkStats(l.ClientNS, lab.HostIfName); err != nil {
		return s, err
	}
	if v.ClientXDP || v.ClientGRO {
		client, err := ethtoolStats(l, l.ClientNS, lab.HostIfName)
		if err != nil {
			return s, err
		}
		s.eth = map[string]uint64{
			"outer xdp_tx": sumKeys(outer, "xdp_tx"), "outer xdp_tx_errors": s.txErr,
			"outer xdp_xmit": sumKeys(outer, "xdp_xmit"), "outer xdp_xmit_errors": sumKeys(outer, "xdp_xmit_errors"),
			"client xdp_packets": sumKeys(client, "xdp_packets"), "client xdp_drops": sumKeys(client, "xdp_drops"),
			"client drops": sumKeys(client, "drops") - sumKeys(client, "xdp_drops"),
		}
	}
	return s, nil
}

// floodSample turns the snapshots at the flood's start (a), the window's
// start (b) and its end (c) into rates over the window of dt seconds.
func floodSample(a, b, c floodSnap, dt float64) FloodSample {
	r := func(x, y uint64) float64 { return float64(y-x) / dt }
	xdpDrop := func(s floodSnap) uint64 {
		return s.fl.OutOfStateDrop + s.fl.BlockDrop + s.fl.PenaltyDrop + s.fl.CookieLimited
	}
	f := FloodSample{
		Offered: r(b.sent, c.sent),
		XDPDrop: r(xdpDrop(b), xdpDrop(c)), XDPTx: r(b.fl.CookieSent, c.fl.CookieSent),
		XDPLimited: r(b.fl.CookieLimited, c.fl.CookieLimited),
		User:       r(b.gateRx, c.gateRx), UserDrop: r(b.usDrop, c.usDrop), UserCookie: r(b.usCookie, c.usCookie),
		Lost: r(b.lost, c.lost), ClientRx: r(b.clientRx, c.clientRx), TxErrors: r(b.txErr, c.txErr),
		XDPTxTotal: c.fl.CookieSent - a.fl.CookieSent, TxErrTotal: c.txErr - a.txErr, NoXDPTx: c.noTx,
		WorkerCPU: float64(c.workerTicks-b.workerTicks) / clkTck / dt, GenCPU: float64(c.genTicks-b.genTicks) / clkTck / dt,
	}
	if c.eth != nil {
		var parts []string
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range c.eth {
				if !yield(k) {
					return
				}
			}
		}) {
			parts = append(parts, fmt.Sprintf("%s %.3f", k, r(b.eth[k], c.eth[k])/1e6))
		}
		f.Ethtool = "(Mpps) " + strings.Join(parts, ", ")
	}
	return f
}

// clkTck is USER_HZ, the unit of /proc's CPU times (100 on every Linux
// architecture Go supports).
const clkTck = 100

// pinnedTicks sums the CPU time (user + system, in clock ticks) of this
// process's threads pinned to cpu alone: the gate's worker on GateCPU, the
// generator on GenCPU.
func pinnedTicks(cpu int) (n uint64) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) != nil || set.Count() != 1 || !set.IsSet(cpu) {
			continue
		}
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command, which is in parentheses and may
		// hold spaces: state is field 3, utime 14, stime 15.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		n += u + st
	}
	return n
}

// ethtoolStats reads an interface's ethtool statistics in ns.
func ethtoolStats(l *lab.Lab, ns, ifname string) (map[string]uint64, error) {
	var st map[string]uint64
	err := l.Do(ns, func() error {
		e, err := ethtool.Open()
		if err != nil {
			return err
		}
		defer e.Close()
		st, err = e.Stats(ifname)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ethtool -S %s in %s: %w", ifname, ns, err)
	}
	return st, nil
}

// sumKeys sums the per-queue counters named *suffix (veth names them
// rx_queue_N_... and tx_queue_N_...).
func sumKeys(st map[string]uint64, suffix string) (n uint64) {
	for k, v := range st {
		if strings.HasSuffix(k, "_"+suffix) {
			n += v
		}
	}
	return n
}

// reportFloods prints the flood variants side by side (medians), and for
// each flood the first line on against off: medians and the range of the
// per-round ratios (the rounds are interleaved, so each ratio compares
// runs made seconds apart).
func reportFloods(w io.Writer, vs []Variant, res []*Result) {
	var idx []int
	for i, v := range vs {
		if v.Flood != "" && len(res[i].Floods) > 0 {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	med := func(r *Result, f func(FloodSample) float64) float64 {
		v := make([]float64, len(r.Floods))
		for k, s := range r.Floods {
			v[k] = f(s)
		}
		return median(v) / 1e6
	}
	fmt.Fprintf(w, "\nfloods, Mpps (medians of %d interleaved runs)\n", len(res[idx[0]].Floods))
	fmt.Fprintf(w, "%-34s %8s %9s %9s %9s %9s %9s %9s %9s %9s %7s\n", "path", "offered", "XDP drop", "XDP ans.", "user", "user drop", "user ans.", "lost", "disposed", "server", "worker")
	for _, i := range idx {
		r := res[i]
		fmt.Fprintf(w, "%-34s %8.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.4f %6.0f%%\n", r.Name,
			med(r, func(f FloodSample) float64 { return f.Offered }), med(r, func(f FloodSample) float64 { return f.XDPDrop }),
			med(r, func(f FloodSample) float64 { return f.XDPTx }), med(r, func(f FloodSample) float64 { return f.User }),
			med(r, func(f FloodSample) float64 { return f.UserDrop }), med(r, func(f FloodSample) float64 { return f.UserCookie }),
			med(r, func(f FloodSample) float64 { return f.Lost }), med(r, FloodSample.Disposed),
			med(r, func(f FloodSample) float64 { return f.Server }), 1e8*med(r, func(f FloodSample) float64 { return f.WorkerCPU }))
	}
	for _, kind := range []string{FloodACK, FloodSYN} {
		on, off := -1, -1
		for _, i := range idx {
			v := vs[i]
			if v.Flood != kind || v.ClientXDP || v.ClientGRO {
				continue
			}
			if v.FirstLine {
				on = i
			} else {
				off = i
			}
		}
		if on < 0 || off < 0 {
			continue
		}
		a, b := res[on], res[off]
		n := min(len(a.Floods), len(b.Floods))
		var ratios []float64
		for k := 0; k < n; k++ {
			if d := b.Floods[k].Disposed(); d > 0 {
				ratios = append(ratios, a.Floods[k].Disposed()/d)
			}
		}
		if len(ratios) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s flood: first line on disposed of %.3f Mpps (XDP %.3f), off %.3f Mpps (all in user space): ratio of medians %.2f, per-round ratios %.2f..%.2f (median %.2f)\n",
			strings.ToUpper(kind), med(a, FloodSample.Disposed), med(a, func(f FloodSample) float64 { return f.XDPDrop + f.XDPTx }),
			med(b, FloodSample.Disposed), med(a, FloodSample.Disposed)/med(b, FloodSample.Disposed),
			slices.Min(ratios), slices.Max(ratios), median(ratios))
	}
}
