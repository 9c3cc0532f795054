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
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xskgate/xskgate/internal/demo"
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/protect"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
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
	Variants  []Variant // default: linux, xskgate
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
}

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
	fmt.Fprintf(o.Out, "setting: RPS on outer's rx-0 steers Linux forwarding to CPU %d (mask %x), for its runs only\n", o.GateCPU, 1<<o.GateCPU)
	if o.TxBudget != 0 {
		fmt.Fprintf(o.Out, "setting: xskgate's XDP_MAX_TX_SKB_BUDGET %d\n", o.TxBudget)
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
			switch {
			case v.Flood != "":
				res[i].Floods = append(res[i].Floods, sm.flood)
				fmt.Fprintf(o.Out, "  run %d %-22s %s\n", run+1, v.Name, sm.flood)
				continue
			case v.Ceiling:
				fmt.Fprintf(o.Out, "  run %d %-22s %6.3f Mpps reached the %s sink on outer (generator counted %.3f Mpps)\n", run+1, v.Name, pps/1e6, sinkName(v), offered/1e6)
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
		if v.AckFlood || v.Flood != "" || v.Ceiling || v.Redirect || v.External {
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
					runs[i][j] = append(runs[i][j], g)
					fmt.Fprintf(o.Out, "  tcp round %d %-26s -P%-2d %6.2f Gbit/s, load %s\n", r+1, v.Name, p, g, loadavg())
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

func sinkName(v Variant) string {
	if v.TCSink {
		return "tc drop (tcx ingress)"
	}
	return "XDP_DROP"
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

type bencher struct {
	o    Options
	l    *lab.Lab
	pass *ebpf.Program // XDP_PASS, the baseline's front end
	shot *ebpf.Program // TC_ACT_SHOT, the receiver
	drop *ebpf.Program // XDP_DROP, the generator ceiling's sink
	gen  GenKind
}

// sink makes the server's eth0 drop everything at tc ingress (a tcx BPF
// program returning TC_ACT_SHOT) and returns the undo. veth counts a frame
// in the server's rx_packets when it hands it over, before the drop. tc,
// not XDP: a veth with an XDP program first copies every skb with little
// headroom into a page-pool page, which AF_XDP's TX skbs are and forwarded
// skbs are not, so an XDP sink would charge one path more than the other.
func (b *bencher) sink(v Variant) (func(), error) {
	var att link.Link
	ns, idx, who := b.l.ServerNS, b.l.ServerIndex, "server"
	if v.External {
		// l2fwd sends the frames back to the client.
		ns, idx, who = b.l.ClientNS, b.l.ClientIndex, "client"
	}
	err := b.l.Do(ns, func() error {
		var err error
		att, err = link.AttachTCX(link.TCXOptions{Interface: idx, Program: b.shot, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach the tcx drop sink to the %s's eth0: %w", who, err)
	}
	return func() { att.Close() }, nil
}

// dut is the device under test as set up for one run.
type dut struct {
	ext      int                // the external l2fwd's process id
	g        *gate.Gate         // nil for Linux forwarding and the ceiling
	insp     *protect.Inspector // the TCP protection, when on
	teardown func()
}

// setup puts the gate namespace in the variant's mode and returns its
// teardown.
func (b *bencher) setup(v Variant) (*dut, error) {
	l := b.l
	if v.Ceiling {
		var att link.Link
		err := l.Do(l.GateNS, func() error {
			var err error
			if v.TCSink {
				att, err = link.AttachTCX(link.TCXOptions{Interface: l.OuterIndex, Program: b.shot, Attach: ebpf.AttachTCXIngress})
			} else {
				att, err = link.AttachXDP(link.XDPOptions{Program: b.drop, Interface: l.OuterIndex, Flags: link.XDPDriverMode})
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("attach the sink to outer: %w", err)
		}
		return &dut{teardown: func() { att.Close() }}, nil
	}
	if v.Redirect {
		undo, err := b.kernelRedirect(v.Direct)
		if err != nil {
			return nil, err
		}
		return &dut{teardown: undo}, nil
	}
	if v.External {
		return b.startExternal()
	}
	if v.Kernel {
		return b.kernelForwarding(v.FrontEnd)
	}
	return b.openGate(v, v.Protection || v.Flood != "", v.FirstLine, benchFlows)
}

// kernelForwarding turns IPv4 forwarding on in the gate namespace, with
// RPS handing every packet outer receives to GateCPU, where Linux forwards
// it (route, neighbour, TX to inner, the server's receive), alone. With
// frontEnd, a bare XDP_PASS program on outer runs first, in NAPI on the
// generator's core, as xskgate's program does.
func (b *bencher) kernelForwarding(frontEnd bool) (*dut, error) {
	l := b.l
	if err := l.SetKernelForwarding(true); err != nil {
		return nil, err
	}
	var atts []link.Link
	undo := func() {
		for _, a := range atts {
			a.Close()
		}
		l.SetKernelForwarding(false)
	}
	if frontEnd {
		// On both sides, as xskgate's program is: TCP's ACKs come in on
		// inner.
		for _, idx := range []int{l.OuterIndex, l.InnerIndex} {
			err := l.Do(l.GateNS, func() error {
				a, err := link.AttachXDP(link.XDPOptions{Program: b.pass, Interface: idx, Flags: link.XDPDriverMode})
				if err == nil {
					atts = append(atts, a)
				}
				return err
			})
			if err != nil {
				undo()
				return nil, fmt.Errorf("attach XDP_PASS to the gate's interfaces: %w", err)
			}
		}
	}
	mask := strconv.FormatUint(1<<b.o.GateCPU, 16)
	if err := b.gateSh("echo " + mask + " > /sys/class/net/outer/queues/rx-0/rps_cpus"); err != nil {
		undo()
		return nil, err
	}
	return &dut{teardown: func() {
		b.gateSh("echo 0 > /sys/class/net/outer/queues/rx-0/rps_cpus")
		undo()
	}}, nil
}

// benchFlows sizes the protection's flow table and the first line's flow
// map, as the demo does.
const benchFlows = 1 << 16

// openGate opens and starts xskgate in the gate namespace: with the TCP
// protection (demo.DemoProtection) when protection, and its XDP first
// line, fed by the Inspector, when firstLine.
func (b *bencher) openGate(v Variant, protection, firstLine bool, flows int) (*dut, error) {
	l := b.l
	d := &dut{}
	var g *gate.Gate
	err := l.Do(l.GateNS, func() error {
		cfg := engine.Config{CPUs: []int{b.o.GateCPU}, Nice: b.o.DUTNice}
		if protection {
			insp, err := protect.New(demo.DemoProtection(), protect.Options{Logger: b.o.Logger, FlowCapacity: flows})
			if err != nil {
				return err
			}
			cfg.Inspector = insp
			d.insp = insp
		}
		var ic *integrity.Config
		if v.Checks {
			c := integrity.DefaultConfig()
			ic = &c
		}
		var err error
		g, err = gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Queues: 1, TxBudget: cmp.Or(v.TxBudget, b.o.TxBudget),
			Umem: xsk.UmemConfig{NumFrames: 4096}, Engine: cfg, Integrity: ic, Logger: b.o.Logger, Carrier: v.Carrier,
			FirstLine: protection && firstLine, FirstLineFlows: flows})
		return err
	})
	if err != nil {
		return nil, err
	}
	stopFL := func() {}
	if protection && firstLine {
		if err := d.insp.SetFirstLine(g.FirstLine(), g.XDPTxErrors); err != nil {
			g.Close()
			return nil, fmt.Errorf("feed the first line: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.insp.RunFirstLine(ctx)
		}()
		stopFL = func() { cancel(); <-done }
	}
	g.Start()
	d.g = g
	d.teardown = func() {
		stopFL()
		g.Close()
	}
	return d, nil
}

func (b *bencher) gateSh(script string) error {
	out, err := b.l.Command(context.Background(), b.l.GateNS, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", script, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// measure runs one window and returns delivered and offered packets/s.
func (b *bencher) measure(ctx context.Context, v Variant, rate float64) (pps, offered float64, drops uint64, err error) {
	sm, err := b.measureAll(ctx, v, rate)
	return sm.pps, sm.offered, sm.drops, err
}

// gateSyscalls sums the workers' sendto kicks, poll sleeps and loop
// iterations.
func gateSyscalls(g *gate.Gate) (kicks, polls, iters uint64) {
	if g == nil {
		return 0, 0, 0
	}
	for _, w := range g.Engine.Workers() {
		for s := range w.Stats {
			kicks += w.Stats[s].Kicks.Load()
			polls += w.Stats[s].Wakeups.Load()
		}
		iters += w.Iterations()
	}
	return kicks, polls, iters
}

// gateRx sums what the gate's workers received on outer.
func gateRx(g *gate.Gate) (n uint64) {
	if g == nil {
		return 0
	}
	for _, w := range g.Engine.Workers() {
		n += w.Stats[engine.Outer].RxPackets.Load()
	}
	return n
}

// sample is one run's figures.
type sample struct {
	pps, offered, handled float64 // delivered, generated, received by the gate's workers (per s)
	drops                 uint64  // the engine's own drops
	busy                  float64 // GateCPU's busy share
	kicks, polls, iters   uint64  // the gate's sendto kicks, poll sleeps, loop iterations
	flood                 FloodSample
}

// frameFor returns the variant's frames (sent in turn) and what varies in
// them.
func (b *bencher) frameFor(v Variant) ([][]byte, Varier) {
	l := b.l
	dst := l.ServerMAC
	if v.Kernel {
		dst = l.OuterMAC // the gate is a router now
	}
	one := func(f []byte) [][]byte { return [][]byte{f} }
	switch {
	case v.Flood == FloodSYN && v.LinuxSYN:
		return one(TCPSynFrameLinux(dst, l.ClientMAC, l.ServerIP4)), Spoofer{}
	case v.Flood == FloodSYN:
		return one(TCPSynFrame(dst, l.ClientMAC, l.ServerIP4)), Spoofer{}
	case v.Flood == FloodACK:
		return one(TCPFloodAckFrame(dst, l.ClientMAC, l.ServerIP4)), Spoofer{}
	case v.AckFlood:
		return one(TCPAckFrame(dst, l.ClientMAC, l.ClientIP4, l.ServerIP4)), nil
	}
	return b.o.Size.frames(dst, l.ClientMAC, l.ClientIP4, l.ServerIP4), nil
}

// clientXDPPass attaches the XDP_PASS program to the client's eth0 (it
// gives that veth NAPI and passes every frame to its stack) and returns
// the undo.
func (b *bencher) clientXDPPass() (func(), error) {
	l := b.l
	var att link.Link
	err := l.Do(l.ClientNS, func() error {
		var err error
		att, err = link.AttachXDP(link.XDPOptions{Program: b.pass, Interface: l.ClientIndex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach XDP_PASS to the client's eth0: %w", err)
	}
	return func() { att.Close() }, nil
}

// clientExtras applies the variant's settings of the client's eth0 and
// returns their undo.
func (b *bencher) clientExtras(v Variant) (func(), error) {
	l := b.l
	var undo []func()
	all := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if v.ClientXDP {
		var att link.Link
		err := l.Do(l.ClientNS, func() error {
			var err error
			att, err = link.AttachXDP(link.XDPOptions{Program: b.drop, Interface: l.ClientIndex, Flags: link.XDPDriverMode})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("attach XDP_DROP to the client's eth0: %w", err)
		}
		undo = append(undo, func() { att.Close() })
	}
	if v.ClientGRO {
		if out, err := l.Command(context.Background(), l.ClientNS, "ethtool", "-K", lab.HostIfName, "gro", "on").CombinedOutput(); err != nil {
			all()
			return nil, fmt.Errorf("turn GRO on at the client's eth0 (ethtool): %w: %s", err, strings.TrimSpace(string(out)))
		}
		undo = append(undo, func() {
			l.Command(context.Background(), l.ClientNS, "ethtool", "-K", lab.HostIfName, "gro", "off").Run()
		})
	}
	return all, nil
}

func (b *bencher) measureAll(ctx context.Context, v Variant, rate float64) (sm sample, err error) {
	l := b.l
	d, err := b.setup(v)
	if err != nil {
		return sm, err
	}
	defer d.teardown()
	if !v.Ceiling {
		unsink, err := b.sink(v)
		if err != nil {
			return sm, err
		}
		defer unsink()
	}
	undo, err := b.clientExtras(v)
	if err != nil {
		return sm, err
	}
	defer undo()
	frames, vary := b.frameFor(v)
	gen, err := newSource(l, b.gen, frames, vary, b.o.Warmup+b.o.Window+time.Minute, b.o.GenNice)
	if err != nil {
		return sm, err
	}
	defer gen.Close()
	// Where the frames are counted: at the server's eth0, or for the
	// ceiling at outer, the generator's peer.
	rxNS, rxIf := l.ServerNS, lab.HostIfName
	switch {
	case v.Ceiling:
		rxNS, rxIf = l.GateNS, lab.OuterName
	case v.External:
		rxNS = l.ClientNS
	}
	var f0, f1, f2 floodSnap
	if v.Flood != "" {
		if f0, err = b.floodSnap(v, d, gen); err != nil {
			return sm, err
		}
	}
	stop := make(chan struct{})
	genErr := make(chan error, 1)
	go func() {
		genErr <- l.Do(l.ClientNS, func() error { return gen.Run(b.o.GenCPU, rate, stop) })
	}()
	genDone := false // its result was taken: do not wait for it again
	wait := func(dur time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-genErr:
			genDone = true
			if err == nil {
				err = errors.New("it returned early")
			}
			return fmt.Errorf("generator stopped: %w", err)
		case <-time.After(dur):
			return nil
		}
	}
	defer func() {
		close(stop)
		if genDone {
			return
		}
		if e := <-genErr; e != nil && err == nil {
			err = e
		}
	}()
	if err := wait(b.o.Warmup); err != nil {
		return sm, err
	}
	r0, _, err := l.LinkStats(rxNS, rxIf)
	if err != nil {
		return sm, err
	}
	if v.Flood != "" {
		if f1, err = b.floodSnap(v, d, gen); err != nil {
			return sm, err
		}
	}
	c0 := cpuTimes(b.o.GateCPU)
	k0, p0, i0 := gateSyscalls(d.g)
	s0, h0, t0 := gen.Sent(), gateRx(d.g), time.Now()
	if err := wait(b.o.Window); err != nil {
		return sm, err
	}
	r1, _, err := l.LinkStats(rxNS, rxIf)
	if err != nil {
		return sm, err
	}
	s1, h1, dt := gen.Sent(), gateRx(d.g), time.Since(t0).Seconds()
	sm.busy = c0.busyUntil(cpuTimes(b.o.GateCPU))
	k1, p1, i1 := gateSyscalls(d.g)
	sm.kicks, sm.polls, sm.iters = k1-k0, p1-p0, i1-i0
	if v.Flood != "" {
		if f2, err = b.floodSnap(v, d, gen); err != nil {
			return sm, err
		}
		sm.flood = floodSample(f0, f1, f2, dt)
	}
	if d.g != nil {
		for _, w := range d.g.Engine.Workers() {
			for s := range w.Stats {
				for r := range w.Stats[s].Drops {
					sm.drops += w.Stats[s].Drops[r].Load()
				}
			}
		}
	}
	sm.pps, sm.offered, sm.handled = float64(r1-r0)/dt, float64(s1-s0)/dt, float64(h1-h0)/dt
	sm.flood.Server = sm.pps
	return sm, nil
}

// tcp runs iperf3 from client to server through the variant's path.
func (b *bencher) tcp(ctx context.Context, v Variant, streams int) (float64, error) {
	l := b.l
	d, err := b.setup(v)
	if err != nil {
		return 0, err
	}
	defer d.teardown()
	srv := l.Command(ctx, l.ServerNS, "iperf3", "-s", "-1", "-B", l.ServerIP4.String())
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("start iperf3 (apt-get install iperf3): %w", err)
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	secs := strconv.Itoa(int(b.o.TCPTime.Seconds()))
	out, err := l.Command(ctx, l.ClientNS, "iperf3", "-c", l.ServerIP4.String(), "-t", secs, "-P", strconv.Itoa(streams), "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %w", err)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("parse iperf3 output: %w", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
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
