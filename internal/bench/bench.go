// Package bench measures xskgate against plain Linux forwarding in the same
// lab, interleaved (A B A B ...), so drift and noise hit both alike.
//
// Topology and pinning (2 cores):
//
//   - the generator (BPF_PROG_RUN live frames, XDP_TX out of client's eth0)
//     runs on GenCPU;
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
	"encoding/json"
	"fmt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"io"
	"log/slog"
	"net/netip"
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
	Name   string
	Kernel bool // plain Linux forwarding instead of xskgate
	// For xskgate: integrity checks on, and the TCP protection stage (a
	// fresh one per run, protecting the lab's prefix) as the inspector.
	Checks, Protection bool
	// AckFlood sends out-of-state TCP ACKs instead of UDP: what the
	// protection stage drops per second, and what still gets through.
	AckFlood bool
	// Carrier is how the XDP program hands over its record (default: the
	// best the kernel allows).
	Carrier xdpprog.Carrier
}

// Options tune a benchmark run.
type Options struct {
	Runs     int           // interleaved runs per variant (default 5)
	Warmup   time.Duration // per run, before counting (default 1s)
	Window   time.Duration // counting window (default 3s)
	GenCPU   int           // default 0
	GateCPU  int           // default 1
	TCP      bool          // also iperf3 TCP through each path
	TCPTime  time.Duration // default 3s
	Variants []Variant     // default: linux, xskgate
	Out      io.Writer
	Logger   *slog.Logger
}

// Result is one variant's figures.
type Result struct {
	Name       string
	PPS        []float64 // delivered packets/s, one per run
	Offered    []float64 // generated packets/s
	EngineDrop []uint64  // xskgate's own drop count per run
	Handled    []float64 // frames/s the gate's workers received (xskgate only)
	LossBelow  float64   // loss at half the variant's median rate
	RateBelow  float64
	TCPGbps    float64
	TCPErr     string
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
func Run(ctx context.Context, o Options) ([]*Result, error) {
	if o.Runs == 0 {
		o.Runs = 5
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
	l, err := lab.UpContext(ctx, lab.Config{Queues: 1, StaticNeighbors: true})
	if err != nil {
		return nil, err
	}
	defer l.Down()
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
	b := &bencher{o: o, l: l, pass: pass, shot: shot}
	fmt.Fprintf(o.Out, "bench: 64-byte UDP frames, 1 queue, generator on CPU %d, device under test on CPU %d; %d interleaved runs of %s (+%s warm-up) per path\n",
		o.GenCPU, o.GateCPU, o.Runs, o.Window, o.Warmup)
	res := make([]*Result, len(o.Variants))
	for i, v := range o.Variants {
		res[i] = &Result{Name: v.Name}
	}
	for run := 0; run < o.Runs; run++ {
		for i, v := range o.Variants {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			pps, offered, drops, handled, err := b.measureAll(ctx, v, 0)
			if err != nil {
				return res, fmt.Errorf("%s run %d: %w", v.Name, run+1, err)
			}
			res[i].PPS = append(res[i].PPS, pps)
			res[i].Handled = append(res[i].Handled, handled)
			res[i].Offered = append(res[i].Offered, offered)
			res[i].EngineDrop = append(res[i].EngineDrop, drops)
			if v.AckFlood {
				fmt.Fprintf(o.Out, "  run %d %-18s %6.3f Mpps handled by the gate, %.4f Mpps reached the server (offered %.2f Mpps)\n", run+1, v.Name, handled/1e6, pps/1e6, offered/1e6)
			} else {
				fmt.Fprintf(o.Out, "  run %d %-18s %6.3f Mpps delivered (offered %.2f Mpps)\n", run+1, v.Name, pps/1e6, offered/1e6)
			}
		}
	}
	// Below saturation: half of each path's median, where loss must be ~0.
	for i, v := range o.Variants {
		if v.AckFlood {
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
		for i, v := range o.Variants {
			if v.AckFlood {
				continue
			}
			res[i].TCPGbps, err = b.tcp(ctx, v)
			if err != nil {
				res[i].TCPErr = err.Error()
			}
		}
	}
	report(o.Out, res)
	return res, nil
}

type bencher struct {
	o    Options
	l    *lab.Lab
	pass *ebpf.Program // XDP_PASS, the baseline's front end
	shot *ebpf.Program // TC_ACT_SHOT, the receiver
}

// sink makes the server's eth0 drop everything at tc ingress (a tcx BPF
// program returning TC_ACT_SHOT) and returns the undo. veth counts a frame
// in the server's rx_packets when it hands it over, before the drop. tc,
// not XDP: a veth with an XDP program first copies every skb with little
// headroom into a page-pool page, which AF_XDP's TX skbs are and forwarded
// skbs are not, so an XDP sink would charge one path more than the other.
func (b *bencher) sink() (func(), error) {
	var att link.Link
	err := b.l.Do(b.l.ServerNS, func() error {
		var err error
		att, err = link.AttachTCX(link.TCXOptions{Interface: b.l.ServerIndex, Program: b.shot, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach the tcx drop sink to the server's eth0: %w", err)
	}
	return func() { att.Close() }, nil
}

// setup puts the gate namespace in the variant's mode and returns its
// teardown.
func (b *bencher) setup(v Variant) (*gate.Gate, func(), error) {
	l := b.l
	if v.Kernel {
		if err := l.SetKernelForwarding(true); err != nil {
			return nil, nil, err
		}
		// Same front end as xskgate: an XDP program on outer (here a bare
		// XDP_PASS) runs in NAPI on the generator's core; RPS then hands
		// every packet to GateCPU, where Linux forwards it, alone.
		var att link.Link
		err := l.Do(l.GateNS, func() error {
			var err error
			att, err = link.AttachXDP(link.XDPOptions{Program: b.pass, Interface: l.OuterIndex, Flags: link.XDPDriverMode})
			return err
		})
		if err != nil {
			l.SetKernelForwarding(false)
			return nil, nil, fmt.Errorf("attach XDP_PASS to outer: %w", err)
		}
		mask := strconv.FormatUint(1<<b.o.GateCPU, 16)
		if err := b.gateSh("echo " + mask + " > /sys/class/net/outer/queues/rx-0/rps_cpus"); err != nil {
			att.Close()
			l.SetKernelForwarding(false)
			return nil, nil, err
		}
		return nil, func() {
			b.gateSh("echo 0 > /sys/class/net/outer/queues/rx-0/rps_cpus")
			att.Close()
			l.SetKernelForwarding(false)
		}, nil
	}
	var g *gate.Gate
	err := l.Do(l.GateNS, func() error {
		cfg := engine.Config{CPUs: []int{b.o.GateCPU}}
		if v.Protection {
			insp, err := protect.New(demo.DemoProtection(), protect.Options{Logger: b.o.Logger})
			if err != nil {
				return err
			}
			cfg.Inspector = insp
		}
		var ic *integrity.Config
		if v.Checks {
			c := integrity.DefaultConfig()
			ic = &c
		}
		var err error
		g, err = gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Queues: 1,
			Umem: xsk.UmemConfig{NumFrames: 4096}, Engine: cfg, Integrity: ic, Logger: b.o.Logger, Carrier: v.Carrier})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	g.Start()
	return g, func() { g.Close() }, nil
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
	pps, offered, drops, _, err = b.measureAll(ctx, v, rate)
	return
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

func (b *bencher) measureAll(ctx context.Context, v Variant, rate float64) (pps, offered float64, drops uint64, handled float64, err error) {
	l := b.l
	g, teardown, err := b.setup(v)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer teardown()
	unsink, err := b.sink()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer unsink()
	dst := l.ServerMAC
	if v.Kernel {
		dst = l.OuterMAC // the gate is a router now
	}
	frame := UDPFrame(dst, l.ClientMAC, l.ClientIP4, l.ServerIP4)
	if v.AckFlood {
		frame = TCPAckFrame(dst, l.ClientMAC, l.ClientIP4, l.ServerIP4)
	}
	gen, err := NewGenerator(l.ClientIndex, frame)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer gen.Close()
	stop := make(chan struct{})
	genErr := make(chan error, 1)
	go func() {
		genErr <- l.Do(l.ClientNS, func() error { return gen.Run(b.o.GenCPU, rate, stop) })
	}()
	genDone := false // its result was taken: do not wait for it again
	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-genErr:
			genDone = true
			return fmt.Errorf("generator stopped: %w", err)
		case <-time.After(d):
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
		return 0, 0, 0, 0, err
	}
	r0, _, err := l.LinkStats(l.ServerNS, lab.HostIfName)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	s0, h0, t0 := gen.Sent(), gateRx(g), time.Now()
	if err := wait(b.o.Window); err != nil {
		return 0, 0, 0, 0, err
	}
	r1, _, err := l.LinkStats(l.ServerNS, lab.HostIfName)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	s1, h1, dt := gen.Sent(), gateRx(g), time.Since(t0).Seconds()
	if g != nil {
		for _, w := range g.Engine.Workers() {
			for s := range w.Stats {
				for r := range w.Stats[s].Drops {
					drops += w.Stats[s].Drops[r].Load()
				}
			}
		}
	}
	return float64(r1-r0) / dt, float64(s1-s0) / dt, drops, float64(h1-h0) / dt, nil
}

// tcp runs iperf3 from client to server through the variant's path.
func (b *bencher) tcp(ctx context.Context, v Variant) (float64, error) {
	l := b.l
	_, teardown, err := b.setup(v)
	if err != nil {
		return 0, err
	}
	defer teardown()
	srv := l.Command(ctx, l.ServerNS, "iperf3", "-s", "-1", "-B", l.ServerIP4.String())
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("start iperf3 (apt-get install iperf3): %w", err)
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	secs := strconv.Itoa(int(b.o.TCPTime.Seconds()))
	out, err := l.Command(ctx, l.ClientNS, "iperf3", "-c", l.ServerIP4.String(), "-t", secs, "-J").Output()
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

func report(w io.Writer, res []*Result) {
	fmt.Fprintf(w, "\n%-18s %9s %9s %9s %12s %14s %10s\n", "path", "min Mpps", "median", "max", "engine drops", "loss @ 50%", "TCP Gbit/s")
	var floods []*Result
	for _, r := range res {
		if len(r.Handled) > 0 && strings.Contains(r.Name, "ackflood") {
			floods = append(floods, r)
			continue
		}
		s := slices.Clone(r.PPS)
		slices.Sort(s)
		var drops uint64
		for _, d := range r.EngineDrop {
			drops += d
		}
		tcp := fmt.Sprintf("%.2f", r.TCPGbps)
		if r.TCPErr != "" {
			tcp = "error"
		} else if r.TCPGbps == 0 {
			tcp = "-"
		}
		fmt.Fprintf(w, "%-18s %9.3f %9.3f %9.3f %12d %7.3f%% @%.2f %10s\n", r.Name, s[0]/1e6, median(s)/1e6, s[len(s)-1]/1e6,
			drops, r.LossBelow*100, r.RateBelow/1e6, tcp)
		if r.TCPErr != "" {
			fmt.Fprintf(w, "  tcp: %s\n", r.TCPErr)
		}
	}
	if len(res) >= 2 && median(res[0].PPS) > 0 {
		for _, r := range res[1:] {
			if strings.Contains(r.Name, "ackflood") {
				continue
			}
			fmt.Fprintf(w, "ratio %s / %s (medians): %.2f\n", r.Name, res[0].Name, median(r.PPS)/median(res[0].PPS))
		}
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

var _ = netip.Addr{}
