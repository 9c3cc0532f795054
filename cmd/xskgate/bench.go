package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/xskgate/xskgate/internal/bench"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

func cmdBench(ctx context.Context, args []string) error {
	fs := newFlags("bench", "[flags]", `Builds a one-queue lab and measures delivered packets/s of UDP frames (--size) through
plain Linux IPv4 forwarding in the gate namespace (no XDP program on its path: what a
user has without xskgate), the same with an XDP_PASS front end on the gate's interfaces
(labelled extra; the fair comparison for TCP), the kernel's XDP_REDIRECT outer->inner
through a cpumap and a devmap (the ceiling of an AF_XDP path on the same cores), xskgate,
and, with --xdpsock, libxdp's xdpsock in l2fwd mode (the C reference; not part of
xskgate), interleaved a b c a b c ..., counting what the receiving eth0 gets (kernel
counters). Then measures loss at half of each path's median rate, and TCP throughput
with iperf3 (--tcp-streams) through the paths that carry TCP.

With --all, also: xskgate with its integrity checks off, without the XDP record, with
the TCP protection on; the protection dropping a one-source ACK flood; the generator's
ceiling (frames/s into an XDP_DROP or tc drop sink on its peer, no gate); SYN and out-of-state ACK
floods from many sources through the protection with the XDP first line on and off; and
(labelled extras) the SYN flood with an XDP program or GRO on the client's eth0, which
XDP_TX from the gate needs on veth. --legit adds verified TCP through the gate under a
flood at twice the AF_XDP path's capacity, first line on and off, against no flood.
--prog-cost (part of --all) times the XDP program alone per frame with BPF_PROG_RUN
(not live frames): the first line's stages and the plain redirect, and the Mpps one
core could run them at.

The generator is pinned to --gen-cpu: live-frame BPF_PROG_RUN if the kernel allows it,
else an AF_PACKET TX ring (the output says which and why); the device under test
(Linux's forwarding, or xskgate's worker) to --gate-cpu. The floods always use the ring:
its slots are rewritten per frame (source address, port, checksums).`)
	o := bench.Options{Out: os.Stdout, TCP: true}
	fs.IntVar(&o.Runs, "runs", 7, "interleaved runs per path (at least 7 on a noisy 2-core machine)")
	fs.DurationVar(&o.Warmup, "warmup", 1e9, "warm-up before each counting window")
	fs.DurationVar(&o.Window, "window", 3e9, "counting window")
	fs.IntVar(&o.GenCPU, "gen-cpu", 0, "CPU for the traffic generator")
	fs.IntVar(&o.GateCPU, "gate-cpu", 1, "CPU for the device under test")
	fs.BoolVar(&o.TCP, "tcp", true, "also measure TCP with iperf3")
	fs.DurationVar(&o.TCPTime, "tcp-time", 3e9, "iperf3 duration")
	fs.IntVar(&o.TCPRounds, "tcp-rounds", 1, "interleaved iperf3 rounds per path and stream count")
	tcpPin := fs.Bool("tcp-pin", true, "pin iperf3's client and server to --gen-cpu (iperf3 -A), leaving --gate-cpu to the device under test; false leaves them to the scheduler")
	gen := fs.String("gen", "auto", "generator: auto (live frames if the kernel allows them, else ring), live, ring")
	fs.IntVar(&o.GenNice, "gen-nice", -10, "nice value of the generator's thread (0: unchanged): others' work on its CPU would set the offered rate")
	fs.IntVar(&o.DUTNice, "dut-nice", -10, "nice value of xskgate's worker thread (0: unchanged): others' work on its CPU would set its rate")
	fs.Float64Var(&o.DUTQuota, "dut-quota", 0, "limit the AF_XDP devices under test (xskgate, the external l2fwd) to this share of their CPU, e.g. 0.4, so that each is saturated and the rates compare capacities (0: no limit)")
	fs.Float64Var(&o.FloodRate, "flood-rate", 0, "frames/s of the flood paths (0: the generator's full speed)")
	fs.BoolVar(&o.Legit, "legit", false, "also measure verified TCP through the gate under floods, first line on and off, against no flood")
	fs.DurationVar(&o.LegitOpts.Duration, "legit-time", 3e9, "verified TCP per --legit run")
	fs.IntVar(&o.LegitOpts.Conns, "legit-conns", 4, "parallel verified connections per --legit run")
	fs.Float64Var(&o.LegitOpts.Rate, "legit-rate", 0, "flood frames/s in --legit (0: twice the AF_XDP path's capacity measured in this run, else 0.8 Mpps)")
	legitFloods := fs.String("legit-floods", "ack,syn", "floods for --legit: ack, syn")
	fs.BoolVar(&o.NAPIThread, "napi-thread", false, "in the floods and the generator's ceiling into XDP_DROP, run outer's NAPI as a thread pinned to --gate-cpu at SCHED_FIFO 1 (a NIC queue's interrupt on the gate's core) and report its cost per frame and the Mpps one core could dispose of")
	fs.BoolVar(&o.LegitOpts.FastPath, "legit-fast-path", false, "extra for --legit: no flood and each flood with the first line on, with the protection's fast path (established connections cross in the kernel)")
	fs.BoolVar(&o.LegitOpts.ClientXDP, "legit-client-xdp", false, "extra for --legit: no flood and each flood with the first line on, with an XDP_PASS program on the client's eth0 (the veth NAPI that XDP_TX back to it needs)")
	all := fs.Bool("all", false, "also measure the other paths (see above)")
	size := fs.String("size", "64", "UDP frames: 64 (bytes on the wire), 1500 (IP packet, the lab's MTU) or imix (7:4:1 of 64/576/1500)")
	xdpsock := fs.String("xdpsock", "", "path of libxdp's xdpsock (bpf-examples AF_XDP-example), measured as the path xdpsock-l2fwd; see the README")
	xdpsockArgs := fs.String("xdpsock-args", "-l -c -Q", "xdpsock's arguments before -i outer -q 0")
	xdpsockPreload := fs.String("xdpsock-preload", "", "LD_PRELOAD for xdpsock (the setrlimit shim where root lacks CAP_SYS_RESOURCE; see the README)")
	txBudget := fs.Uint("tx-budget", 0, "xskgate's XDP_MAX_TX_SKB_BUDGET (0: the gate's default)")
	tcpStreams := fs.String("tcp-streams", "1,8", "iperf3 -P values for the TCP comparison")
	progCost := fs.Bool("prog-cost", false, "measure the XDP program's own cost per frame (BPF_PROG_RUN, no lab; also part of --all)")
	progRuns := fs.Int("prog-runs", 20000, "BPF_PROG_RUN calls per case and round for --prog-cost")
	names := []string{}
	variants := []bench.Variant{
		{Name: "linux-forwarding", Kernel: true},
		{Name: "linux-forwarding+xdp-pass", Kernel: true, FrontEnd: true},
		{Name: "xdp-redirect", Redirect: true},
		{Name: "xskgate", Checks: true},
		{Name: "xdpsock-l2fwd", External: true},
		{Name: "xdp-redirect-devmap", Redirect: true, Direct: true},
		{Name: "xdp-redirect-both", RedirectBoth: true},
		{Name: "xskgate-nochecks"},
		{Name: "xskgate-budget256", Checks: true, TxBudget: 256},
		{Name: "xskgate-budget32", Checks: true, TxBudget: 32},
		{Name: "xskgate-nocarrier", Checks: true, Carrier: xdpprog.CarrierNone},
		{Name: "xskgate-swcsum", Checks: true, SoftwareChecksums: true},
		{Name: "xskgate+fastpath", Checks: true, FastPath: true},
		{Name: "xskgate+protection", Checks: true, Protection: true},
		{Name: "protection-ackflood", Checks: true, Protection: true, AckFlood: true},
		{Name: "generator-ceiling", Ceiling: true},
		{Name: "generator-ceiling-tc", Ceiling: true, TCSink: true},
		{Name: "ackflood-firstline", Checks: true, Flood: bench.FloodACK, FirstLine: true},
		{Name: "ackflood-userspace", Checks: true, Flood: bench.FloodACK},
		{Name: "synflood-firstline", Checks: true, Flood: bench.FloodSYN, FirstLine: true},
		{Name: "synflood-userspace", Checks: true, Flood: bench.FloodSYN},
		// Extras: settings of the client's eth0 that give its veth NAPI.
		{Name: "synflood-firstline+client-xdp", Checks: true, Flood: bench.FloodSYN, FirstLine: true, ClientXDP: true},
		{Name: "synflood-firstline+client-gro", Checks: true, Flood: bench.FloodSYN, FirstLine: true, ClientGRO: true},
		{Name: "synflood-firstline+client-xdp+74B", Checks: true, Flood: bench.FloodSYN, FirstLine: true, ClientXDP: true, LinuxSYN: true},
	}
	for _, v := range variants {
		names = append(names, v.Name)
	}
	only := fs.String("only", "", "comma-separated paths to measure, from: "+strings.Join(names, ", "))
	var err error
	if err = fs.Parse(args); err != nil {
		return err
	}
	o.TCPFree = !*tcpPin
	switch o.Gen = bench.GenKind(*gen); o.Gen {
	case bench.GenAuto, bench.GenLive, bench.GenRing:
	default:
		return fmt.Errorf("bench --gen: unknown generator %q (want auto, live or ring)", *gen)
	}
	for _, f := range strings.Split(*legitFloods, ",") {
		if f != bench.FloodACK && f != bench.FloodSYN {
			return fmt.Errorf("bench --legit-floods: unknown flood %q (want ack, syn)", f)
		}
		o.LegitOpts.Floods = append(o.LegitOpts.Floods, f)
	}
	if o.DUTQuota < 0 || o.DUTQuota > 1 {
		return fmt.Errorf("bench --dut-quota: %v is not a share of one CPU (want 0 for none, or above 0 up to 1, e.g. 0.4)", o.DUTQuota)
	}
	if o.Size, err = bench.ParseSize(*size); err != nil {
		return fmt.Errorf("bench --size: %w", err)
	}
	if *xdpsock != "" {
		o.External = &bench.External{Path: *xdpsock, Args: strings.Fields(*xdpsockArgs)}
		if *xdpsockPreload != "" {
			o.External.Env = []string{"LD_PRELOAD=" + *xdpsockPreload}
		}
	}
	o.TxBudget = uint32(*txBudget)
	o.TCPStreams = nil
	for _, f := range strings.Split(*tcpStreams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 128 {
			return fmt.Errorf("bench --tcp-streams: %q is not a stream count in [1, 128]", f)
		}
		o.TCPStreams = append(o.TCPStreams, n)
	}
	o.Variants = variants[:5]
	if *all {
		o.Variants = variants
	}
	if *only != "" {
		o.Variants = nil
		for _, name := range strings.Split(*only, ",") {
			i := slices.IndexFunc(variants, func(v bench.Variant) bool { return v.Name == name })
			if i < 0 {
				return fmt.Errorf("bench --only: unknown path %q", name)
			}
			o.Variants = append(o.Variants, variants[i])
		}
	}
	if err := needRoot(); err != nil {
		return err
	}
	if *progCost || *all {
		c, _, err := xdpprog.ChooseCarrier(xdpprog.CarrierAuto)
		if err != nil {
			return err
		}
		if _, err := bench.ProgCost(os.Stdout, c, o.GenCPU, o.Runs, *progRuns); err != nil {
			return err
		}
		if !*all && *only == "" {
			return nil
		}
	}
	_, err = bench.Run(ctx, o)
	return err
}
