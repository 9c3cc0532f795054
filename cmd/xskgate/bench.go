package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/xskgate/xskgate/internal/bench"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

func cmdBench(ctx context.Context, args []string) error {
	fs := newFlags("bench", "[flags]", `Builds a one-queue lab and measures delivered packets/s of 64-byte UDP frames through
(a) plain Linux IPv4 forwarding in the gate namespace and (b) xskgate, interleaved
a b a b ..., counting what the server's eth0 receives (kernel counters). Then measures
loss at half of each path's median rate, and TCP throughput with iperf3 through both.

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
	gen := fs.String("gen", "auto", "generator: auto (live frames if the kernel allows them, else ring), live, ring")
	fs.IntVar(&o.GenNice, "gen-nice", -10, "nice value of the generator's thread (0: unchanged): others' work on its CPU would set the offered rate")
	fs.IntVar(&o.DUTNice, "dut-nice", -10, "nice value of xskgate's worker thread (0: unchanged): others' work on its CPU would set its rate")
	fs.Float64Var(&o.FloodRate, "flood-rate", 0, "frames/s of the flood paths (0: the generator's full speed)")
	fs.BoolVar(&o.Legit, "legit", false, "also measure verified TCP through the gate under floods, first line on and off, against no flood")
	fs.DurationVar(&o.LegitOpts.Duration, "legit-time", 3e9, "verified TCP per --legit run")
	fs.IntVar(&o.LegitOpts.Conns, "legit-conns", 4, "parallel verified connections per --legit run")
	fs.Float64Var(&o.LegitOpts.Rate, "legit-rate", 0, "flood frames/s in --legit (0: twice the AF_XDP path's capacity measured in this run, else 0.8 Mpps)")
	legitFloods := fs.String("legit-floods", "ack,syn", "floods for --legit: ack, syn")
	fs.BoolVar(&o.LegitOpts.ClientXDP, "legit-client-xdp", false, "extra for --legit: no flood and each flood with the first line on, with an XDP_PASS program on the client's eth0 (the veth NAPI that XDP_TX back to it needs)")
	all := fs.Bool("all", false, "also measure the other paths (see above)")
	progCost := fs.Bool("prog-cost", false, "measure the XDP program's own cost per frame (BPF_PROG_RUN, no lab; also part of --all)")
	progRuns := fs.Int("prog-runs", 20000, "BPF_PROG_RUN calls per case and round for --prog-cost")
	names := []string{}
	variants := []bench.Variant{
		{Name: "linux-forwarding", Kernel: true},
		{Name: "xskgate", Checks: true},
		{Name: "xskgate-nochecks"},
		{Name: "xskgate-nocarrier", Checks: true, Carrier: xdpprog.CarrierNone},
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
	if err := fs.Parse(args); err != nil {
		return err
	}
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
	_, err := bench.Run(ctx, o)
	return err
}
