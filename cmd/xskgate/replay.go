package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/xskgate/xskgate/internal/replay"
)

func cmdReplay(ctx context.Context, args []string) error {
	fs := newFlags("replay", "--fault NAME [flags]", `Runs xskgate's real engine and integrity checks on the software kernel model, with a
kernel-side fault injected at a seeded rate, and reports the faults injected, the
violations detected, the evidence files and the frame accounting. The same --seed hits
the same frames and ring slots again. No root needed.

Faults: `+strings.Join(replay.Faults, ", "))
	var s replay.Scenario
	fs.StringVar(&s.Fault, "fault", "veth-race", "fault to inject")
	fs.Float64Var(&s.Rate, "rate", 0.0001, "probability per frame")
	fs.IntVar(&s.Limit, "limit", 0, "at most this many injections (0: no limit)")
	fs.Uint64Var(&s.Seed, "seed", 1, "random seed: the same seed replays the same faults")
	fs.IntVar(&s.Frames, "frames", 200000, "frames to send")
	fs.IntVar(&s.Queues, "queues", 1, "queue pairs")
	fs.BoolVar(&s.Poison, "poison", true, "poison consumed RX/COMPLETION slots")
	fs.StringVar(&s.DumpDir, "dir", "", "write the flight-recorder dump and pcapng capture here (created 0700)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := replay.Run(ctx, s)
	if res != nil {
		res.Print(os.Stdout, s)
	}
	if err != nil {
		return err
	}
	if s.Fault != "none" && len(res.Injected) > 0 && len(res.Violations) == 0 {
		return fmt.Errorf("%d faults injected and none detected", len(res.Injected))
	}
	return nil
}
