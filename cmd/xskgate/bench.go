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
a b a b ..., counting what the server's eth0 receives (kernel counters); with --all
also xskgate with its integrity checks off, with the TCP protection stage on, and the
protection dropping an ACK flood (out-of-state segments): how many per second it drops
and how many still reach the server. Then measures
loss at half of each path's median rate, and TCP throughput with iperf3 through both.
The generator (XDP live frames, BPF_PROG_RUN) is pinned to --gen-cpu; the device under
test (Linux's forwarding NAPI thread, or xskgate's worker) to --gate-cpu.`)
	o := bench.Options{Out: os.Stdout, TCP: true}
	fs.IntVar(&o.Runs, "runs", 5, "interleaved runs per path")
	fs.DurationVar(&o.Warmup, "warmup", 1e9, "warm-up before each counting window")
	fs.DurationVar(&o.Window, "window", 3e9, "counting window")
	fs.IntVar(&o.GenCPU, "gen-cpu", 0, "CPU for the traffic generator")
	fs.IntVar(&o.GateCPU, "gate-cpu", 1, "CPU for the device under test")
	fs.BoolVar(&o.TCP, "tcp", true, "also measure TCP with iperf3")
	fs.DurationVar(&o.TCPTime, "tcp-time", 3e9, "iperf3 duration")
	all := fs.Bool("all", false, "also measure xskgate with integrity checks off, without the XDP record, and with TCP protection on")
	only := fs.String("only", "", "comma-separated paths to measure, from: linux-forwarding, xskgate, xskgate-nochecks, xskgate-nocarrier, xskgate+protection, protection-ackflood")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needRoot(); err != nil {
		return err
	}
	if *all || *only != "" {
		o.Variants = []bench.Variant{
			{Name: "linux-forwarding", Kernel: true},
			{Name: "xskgate", Checks: true},
			{Name: "xskgate-nochecks"},
			{Name: "xskgate-nocarrier", Checks: true, Carrier: xdpprog.CarrierNone},
			{Name: "xskgate+protection", Checks: true, Protection: true},
			{Name: "protection-ackflood", Checks: true, Protection: true, AckFlood: true},
		}
	}
	if *only != "" {
		var pick []bench.Variant
		for _, name := range strings.Split(*only, ",") {
			i := slices.IndexFunc(o.Variants, func(v bench.Variant) bool { return v.Name == name })
			if i < 0 {
				return fmt.Errorf("bench --only: unknown path %q", name)
			}
			pick = append(pick, o.Variants[i])
		}
		o.Variants = pick
	}
	_, err := bench.Run(ctx, o)
	return err
}
