// Package bench measures xskgate against plain Linux forwarding in the same
// lab, interleaved (A B A B ...), so drift and noise hit both alike.
//
// Topology and pinning (2 cores):
//
//   - the generator runs on GenCPU: BPF_PROG_RUN live frames (XDP_TX out of
//     client's eth0) where the kernel allows it, else an AF_PACKET TX ring
//     on client's eth0 (RingGenerator); the output says which and why;
//   - plain Linux forwarding: a bare XDP_PASS program on outer gives it the
//     same NAPI front end as xskgate, on GenCPU; RPS hands each packet to
//     GateCPU, where the kernel forwards it (route, neighbour, TX to inner,
//     the server's receive), alone;
//   - xskgate: outer's NAPI runs the XDP program and the copy into the UMEM
//     where the frames are sent (GenCPU, as in the reference l2fwd
//     measurement), and the gate's worker, pinned to GateCPU, does the rest
//     (RX ring, verdict, TX through sendto into inner, completions).
//
// Delivered packets are read from the server's eth0 kernel counter, never
// from xskgate's own numbers.
package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// Variant is one path to measure.
type Variant struct {
	Name string
	// Kernel is plain Linux IPv4 forwarding instead of xskgate: what a
	// user has without it, no XDP program on the path. FrontEnd adds a
	// bare XDP_PASS program on outer, the front end xskgate's path has
	// (labelled extra; the fair row for TCP, since an XDP program turns
	// veth's GRO path into a copy per skb).
	Kernel, FrontEnd bool
	// Redirect is the kernel's own XDP forwarding, outer to inner through
	// a cpumap to GateCPU and a devmap (redirect.go): the ceiling of an
	// AF_XDP path on the same cores.
	// TxBudget is xskgate's XDP_MAX_TX_SKB_BUDGET for this path (0:
	// Options.TxBudget).
	TxBudget uint32
	// Direct skips the cpumap: all of it on the generator's core.
	Redirect, Direct bool
	// RedirectBoth is the kernel's XDP forwarding both ways through a
	// devmap (redirect.go), the TCP ceiling; the endpoints' TX checksum
	// offload is off while it runs.
	RedirectBoth bool
	// External runs Options.External (libxdp's xdpsock l2fwd) instead of
	// xskgate; its frames come back to the client's eth0.
	External bool
	// For xskgate: integrity checks on, and the TCP protection stage (a
	// fresh one per run, protecting the lab's prefix) as the inspector.
	Checks, Protection bool
	// AckFlood sends out-of-state TCP ACKs instead of UDP: what the
	// protection stage drops per second, and what still gets through.
	AckFlood bool
	// Carrier is how the XDP program hands over its record (default: the
	// best the kernel allows).
	Carrier xdpprog.Carrier
	// SoftwareChecksums: xskgate completes the neighbours' partial
	// checksums in software even where the kernel could at TX.
	SoftwareChecksums bool
	// FastPath: xskgate with the TCP protection and its kernel fast path
	// for established flows, with RPS handing outer's frames to GateCPU
	// as the Linux forwarding rows do (the tc redirect runs there).
	FastPath bool
	// Ceiling measures the generator alone: no gate; an XDP_DROP program
	// on outer, the generator's peer (or with TCSink a tc drop program at
	// its ingress), sinks every frame, and outer's kernel counter says how
	// many arrived.
	Ceiling, TCSink bool
	// Flood sends a SYN flood (FloodSYN) or an out-of-state ACK flood
	// (FloodACK) from many sources (FloodSource, FloodPort) through the
	// TCP protection (demo.DemoProtection), at Options.FloodRate.
	// FirstLine loads the XDP first line and feeds it from the Inspector;
	// without it the flood is handled in user space.
	Flood     string
	FirstLine bool
	// LinuxSYN makes the SYN flood's frames 74 bytes with the options
	// Linux sends (TCPSynFrameLinux) instead of 60 with an MSS only.
	LinuxSYN bool
	// ClientXDP attaches an XDP_DROP program to the client's eth0 for the
	// run, ClientGRO turns its GRO on: either gives that veth NAPI, which
	// frames sent with XDP_TX from the gate's outer need to arrive.
	ClientXDP, ClientGRO bool
}

// Flood kinds.
const (
	FloodSYN = "syn"
	FloodACK = "ack"
)

// Options tune a benchmark run.
type Options struct {
	Runs    int           // interleaved runs per variant (default 5)
	Warmup  time.Duration // per run, before counting (default 1s)
	Window  time.Duration // counting window (default 3s)
	GenCPU  int           // default 0
	GateCPU int           // default 1
	TCP     bool          // also iperf3 TCP through each path
	TCPTime time.Duration // default 3s
	// TCPRounds is how many interleaved rounds of iperf3 per path and
	// stream count (default 1).
	TCPRounds int
	// TCPFree leaves iperf3's client and server to the scheduler. By
	// default both are pinned to GenCPU (iperf3 -A), as the generator is:
	// GateCPU is the device under test's, whatever the path (without
	// pinning, the endpoints took GateCPU beside Linux's forwarding and
	// GenCPU beside xskgate's worker).
	TCPFree  bool
	Variants []Variant // default: linux, xskgate
	// Gen picks the generator (default GenAuto: live frames if the
	// kernel allows them, else the TX ring).
	Gen GenKind
	// GenNice is the generator thread's nice value (0: unchanged); on a
	// shared machine a negative one keeps others' work on its core from
	// setting the offered rate.
	GenNice int
	// DUTNice is the gate's worker thread's nice value (0: unchanged).
	// Linux forwards in softirq, which no task on its core delays; the
	// worker is a task among others.
	DUTNice int
	// NAPIThread: in the floods and the generator's ceiling into XDP_DROP,
	// outer's NAPI runs as a thread pinned to GateCPU at SCHED_FIFO 1, and
	// its run time gives the cost per frame (napi.go).
	NAPIThread bool
	// FloodRate paces the Flood variants, frames/s (0: as fast as the
	// generator goes).
	FloodRate float64
	// Legit also measures verified TCP through the gate under a flood,
	// first line on and off, against no flood (LegitOptions).
	Legit     bool
	LegitOpts LegitOptions
	// Size is what the UDP paths send (default Size64); the floods keep
	// their own frames.
	Size Size
	// External is the program the External variants run (nil: those
	// variants are skipped with a note).
	External *External
	// TxBudget is xskgate's XDP_MAX_TX_SKB_BUDGET (0: the gate's default).
	TxBudget uint32
	// DUTQuota, when above 0, limits the AF_XDP device under test to that
	// share of its CPU (limitDUT), so that every such path is saturated
	// and the rates compare capacities rather than what the generator
	// offered.
	DUTQuota float64
	// TCPStreams are the iperf3 -P values the TCP comparison runs
	// (default 1 and 8).
	TCPStreams []int
	Out        io.Writer
	Logger     *slog.Logger
}

// Result is one variant's figures.
type Result struct {
	Name       string
	PPS        []float64 // delivered packets/s, one per run
	Offered    []float64 // generated packets/s
	EngineDrop []uint64  // xskgate's own drop count per run
	Handled    []float64 // frames/s the gate's workers received (xskgate only)
	Busy       []float64 // GateCPU's busy share in the window (0..1), all tasks and softirqs
	LossBelow  float64   // loss at half the variant's median rate
	RateBelow  float64
	TCPGbps    []float64 // one per TCPStreams value
	TCPErr     string
	Floods     []FloodSample // Flood variants: one per run
	NAPI       []NAPICost    // with Options.NAPIThread: one per run
}

// Run runs the benchmark and prints the table.
func Run(ctx context.Context, o Options) (_ []*Result, err error) {
	if o.Runs == 0 {
		o.Runs = 7
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
	if o.Window == 0 {
		o.Window = 3 * time.Second
	}
	if o.TCPTime == 0 {
		o.TCPTime = 3 * time.Second
	}
	if o.GenCPU == 0 && o.GateCPU == 0 {
		o.GateCPU = 1
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(o.Variants) == 0 {
		o.Variants = []Variant{{Name: "linux-forwarding", Kernel: true}, {Name: "xskgate", Checks: true}}
	}
	if len(o.TCPStreams) == 0 {
		o.TCPStreams = []int{1, 8}
	}
	o.Size = o.Size.orDefault()
	if len(o.Size.IPLens) > 1 || o.Size.IPLens[0] != Size64.IPLens[0] {
		o.Gen = GenRing // the live-frame generator sends one 64-byte frame
	}
	if o.External == nil {
		o.Variants = slices.DeleteFunc(slices.Clone(o.Variants), func(v Variant) bool {
			if v.External {
				fmt.Fprintf(o.Out, "bench: %s skipped: no external l2fwd program (--xdpsock PATH; see the README)\n", v.Name)
			}
			return v.External
		})
	}
	l, err := lab.UpContext(ctx, lab.Config{Queues: 1, StaticNeighbors: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		// Also on error: the bench leaves no namespace behind.
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove the bench's lab: %w", derr))
		}
	}()
	pass, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xskgate_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("load XDP_PASS program: %w", err)
	}
	defer pass.Close()
	shot, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xskgate_sink", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* TC_ACT_SHOT */), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("load tc drop program: %w", err)
	}
	defer shot.Close()
	drop, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xskgate_drop", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1 /* XDP_DROP */), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("load XDP_DROP program: %w", err)
	}
	defer drop.Close()
	gen, why, err := chooseGen(l, o.Gen)
	if err != nil {
		return nil, err
	}
	b := &bencher{o: o, l: l, pass: pass, shot: shot, drop: drop, gen: gen}
	fmt.Fprintf(o.Out, "bench: %s, 1 queue, generator on CPU %d, device under test on CPU %d; %d interleaved runs of %s (+%s warm-up) per path; load average %s\n",
		o.Size.orDefault(), o.GenCPU, o.GateCPU, o.Runs, o.Window, o.Warmup, loadavg())
	fmt.Fprintf(o.Out, "lab: %s-{client,gate,server}; generator: %s (%s)\n", l.Prefix, gen.describe(), why)
	if o.GenNice != 0 {
		fmt.Fprintf(o.Out, "setting: the generator's thread runs at nice %d, so that other work on CPU %d does not set the offered rate (--gen-nice 0 leaves it)\n", o.GenNice, o.GenCPU)
	}
	if o.DUTNice != 0 {
		fmt.Fprintf(o.Out, "setting: xskgate's worker thread (and the external l2fwd) runs at nice %d, so that other work on CPU %d does not set its rate; Linux forwards in softirq, which tasks do not delay (--dut-nice 0 leaves it)\n", o.DUTNice, o.GateCPU)
	}
	if o.NAPIThread {
		fmt.Fprintf(o.Out, "setting: in the floods and the generator's ceiling into XDP_DROP, outer's NAPI is a thread (/sys/class/net/outer/threaded) pinned to CPU %d at SCHED_FIFO 1, as a NIC queue's interrupt on the gate's core; its run time per frame is the receive path's cost (--napi-thread)\n", o.GateCPU)
	}
	fmt.Fprintf(o.Out, "setting: RPS on outer's rx-0 steers Linux forwarding (and xskgate+fastpath's tc redirect) to CPU %d (mask %x), for those runs only\n", o.GateCPU, 1<<o.GateCPU)
	if o.TxBudget != 0 {
		fmt.Fprintf(o.Out, "setting: xskgate's XDP_MAX_TX_SKB_BUDGET %d\n", o.TxBudget)
	}
	if o.DUTQuota > 0 {
		fmt.Fprintf(o.Out, "setting: the AF_XDP devices under test (xskgate's worker thread, the external l2fwd's process) are limited to %.2f of CPU %d (cgroup cpu bandwidth, %v period), so that each is saturated and delivers its capacity times that share; kernel paths are not limited (--dut-quota)\n", o.DUTQuota, o.GateCPU, quotaPeriod)
	}
	for _, v := range o.Variants {
		if v.External {
			fmt.Fprintf(o.Out, "external: %s runs as: ip netns exec %s-gate %s\n", v.Name, l.Prefix, o.External.Command(o.GateCPU, o.DUTNice))
		}
	}
	for _, v := range o.Variants {
		if v.Flood != "" {
			fmt.Fprintf(o.Out, "floods: from %d sources in 198.18.1.0-198.19.255.255 and source ports 1024-65535 to %s port %d (the ring generator rewrites source, port and checksums per frame), at %s\n",
				floodCount, l.ServerIP4, FloodPortDst, rateString(o.FloodRate))
			break
		}
	}
	res := make([]*Result, len(o.Variants))
	for i, v := range o.Variants {
		res[i] = &Result{Name: v.Name}
	}
	for run := 0; run < o.Runs; run++ {
		for i, v := range o.Variants {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			rate := 0.0
			if v.Flood != "" {
				rate = o.FloodRate
			}
			sm, err := b.measureAll(ctx, v, rate)
			if err != nil {
				return res, fmt.Errorf("%s run %d: %w", v.Name, run+1, err)
			}
			pps, offered, drops, handled := sm.pps, sm.offered, sm.drops, sm.handled
			res[i].PPS = append(res[i].PPS, pps)
			res[i].Handled = append(res[i].Handled, handled)
			res[i].Offered = append(res[i].Offered, offered)
			res[i].EngineDrop = append(res[i].EngineDrop, drops)
			res[i].Busy = append(res[i].Busy, sm.busy)
			napi := ""
			if sm.napi.Frames > 0 {
				res[i].NAPI = append(res[i].NAPI, sm.napi)
				napi = "; " + sm.napi.String()
			}
			switch {
			case v.Flood != "":
				res[i].Floods = append(res[i].Floods, sm.flood)
				fmt.Fprintf(o.Out, "  run %d %-22s %s%s\n", run+1, v.Name, sm.flood, napi)
				continue
			case v.Ceiling:
				fmt.Fprintf(o.Out, "  run %d %-22s %6.3f Mpps reached the %s sink on outer (generator counted %.3f Mpps)%s\n", run+1, v.Name, pps/1e6, sinkName(v), offered/1e6, napi)
				continue
			}
			if v.AckFlood {
				fmt.Fprintf(o.Out, "  run %d %-18s %6.3f Mpps handled by the gate, %.4f Mpps reached the server (offered %.2f Mpps)\n", run+1, v.Name, handled/1e6, pps/1e6, offered/1e6)
			} else {
				gs := ""
				if sm.handled > 0 {
					n := sm.handled * o.Window.Seconds()
					gs = fmt.Sprintf(", per 1000 frames: %.0f sendto, %.1f poll, %.0f loops", float64(sm.kicks)*1000/n, float64(sm.polls)*1000/n, float64(sm.iters)*1000/n)
				}
				fmt.Fprintf(o.Out, "  run %d %-22s %6.3f Mpps delivered (offered %.2f Mpps), CPU %d busy %3.0f%%%s, load %s\n", run+1, v.Name, pps/1e6, offered/1e6, o.GateCPU, sm.busy*100, gs, loadavg())
			}
		}
	}
	// Below saturation: half of each path's median, where loss must be ~0.
	for i, v := range o.Variants {
		if !v.carriesTCP() { // floods, ceilings and one-way paths have no loss figure
			continue
		}
		rate := median(res[i].PPS) / 2
		pps, offered, _, err := b.measure(ctx, v, rate)
		if err != nil {
			return res, err
		}
		res[i].RateBelow = offered
		if offered > 0 {
			res[i].LossBelow = max(0, 1-pps/offered)
		}
	}
	if o.TCP {
		// Interleaved like the packet rounds: round r runs every path
		// with every stream count; the table shows medians.
		runs := make([][][]float64, len(o.Variants)) // [variant][streams][round]
		for i := range runs {
			runs[i] = make([][]float64, len(o.TCPStreams))
		}
		if o.TCPFree {
			fmt.Fprintf(o.Out, "tcp: iperf3 client and server left to the scheduler (--tcp-pin=false)")
		} else {
			fmt.Fprintf(o.Out, "tcp: iperf3 client and server pinned to CPU %d (iperf3 -A), the device under test alone on CPU %d", o.GenCPU, o.GateCPU)
		}
		fmt.Fprintf(o.Out, "; congestion control %s (the client namespace's default)\n", b.congestionControl())
		for r := 0; r < max(1, o.TCPRounds); r++ {
			for i, v := range o.Variants {
				if !v.carriesTCP() {
					continue
				}
				for j, p := range o.TCPStreams {
					g, err := b.tcp(ctx, v, p)
					if err != nil {
						res[i].TCPErr = err.Error()
						continue
					}
					runs[i][j] = append(runs[i][j], g.Gbps)
					fmt.Fprintf(o.Out, "  tcp round %d %-26s -P%-2d %s, load %s\n", r+1, v.Name, p, g, loadavg())
				}
			}
		}
		for i := range o.Variants {
			for j := range o.TCPStreams {
				res[i].TCPGbps = append(res[i].TCPGbps, median(runs[i][j]))
			}
		}
		res0 := -1
		for i, v := range o.Variants {
			if v.Kernel && v.FrontEnd {
				res0 = i
			}
		}
		for i, v := range o.Variants {
			if res0 < 0 || !v.carriesTCP() || v.Kernel {
				continue
			}
			for j, p := range o.TCPStreams {
				fmt.Fprintf(o.Out, "TCP -P%d ratio %s / %s: %s\n", p, v.Name, o.Variants[res0].Name, ratios(runs[i][j], runs[res0][j]))
			}
		}
	}
	report(o.Out, o.Variants, res, o)
	reportFloods(o.Out, o.Variants, res)
	reportNAPI(o.Out, o, res)
	if o.Legit {
		if err := b.legit(ctx, res); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(o.Out, "load average at the end: %s\n", loadavg())
	return res, nil
}

// carriesTCP: the paths a TCP connection can cross both ways (the
// redirect ceiling and l2fwd go one way).
func (v Variant) carriesTCP() bool {
	return !v.AckFlood && v.Flood == "" && !v.Ceiling && !v.Redirect && !v.External
}

func sinkName(v Variant) string {
	if v.TCSink {
		return "tc drop (tcx ingress)"
	}
	return "XDP_DROP"
}
