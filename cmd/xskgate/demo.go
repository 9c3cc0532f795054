package main

import (
	"context"
	"os"

	"github.com/xskgate/xskgate/internal/demo"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

func cmdDemo(ctx context.Context, args []string) error {
	fs := newFlags("demo", "[flags]", `Builds the lab (namespaces client | gate | server joined by veth pairs, addresses from
198.18.0.0/15 and 2001:2::/48 only), starts xskgate between the gate's outer and inner
interfaces, pushes TCP connections from client to server whose bytes are verified with
SHA-256 in both directions, prints live progress and a report, then removes everything.
Ctrl-C stops early and still cleans up.`)
	o := demo.Options{Out: os.Stdout, Progress: demo.Interactive(os.Stdout)}
	fs.DurationVar(&o.Duration, "duration", 10e9, "how long to send traffic")
	fs.IntVar(&o.Conns, "conns", 8, "parallel TCP connections")
	fs.Int64Var(&o.Size, "size", 4<<20, "bytes each way per connection")
	fs.IntVar(&o.Queues, "queues", 2, "queues per veth end (one worker per queue)")
	mode := fs.String("xdp-mode", "native", "XDP attach mode: native or generic")
	carrier := fs.String("carrier", "auto", "how the XDP program hands the frame length to user space: auto, meta, head or none")
	fs.StringVar(&o.Prefix, "prefix", "", "lab name prefix (default random)")
	verbose := fs.Bool("v", false, "log the daemon's lines to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needRoot(); err != nil {
		return err
	}
	m, err := xdpprog.ParseMode(*mode)
	if err != nil {
		return err
	}
	o.XDPMode = m
	if o.Carrier, err = xdpprog.ParseCarrier(*carrier); err != nil {
		return err
	}
	if *verbose {
		o.Logger = logger("info", false)
	}
	_, err = demo.Run(ctx, o)
	return err
}
