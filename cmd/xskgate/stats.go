package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xskgate/xskgate/internal/config"
	"github.com/xskgate/xskgate/internal/control"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/protect"
)

func cmdStats(ctx context.Context, args []string) error {
	fs := newFlags("stats", "[--control PATH]", "Prints a running daemon's counters, read over its control socket (root only).")
	path := fs.String("control", config.Default().Control.Socket, "control socket path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var snap statsReply
	if err := control.Call(ctx, *path, "stats", nil, &snap); err != nil {
		return err
	}
	ws := snap.Workers
	fmt.Printf("xdp record carrier: %s (%s)\n", snap.Carrier, snap.CarrierWhy)
	for _, p := range snap.Programs {
		fmt.Printf("xdp program on %s: meta_refused %d, no_headroom %d\n", p.Iface, p.MetaRefused, p.NoHeadroom)
	}
	if fl := snap.FirstLine; fl != nil {
		fmt.Printf("first line in XDP: stages %s (monitor: %s), %d flows mirrored, %d sources in the penalty box, scopes flagged %v\n",
			fl.Stages, fl.Monitor, fl.Flows, fl.Penalized, fl.Flagged)
		fmt.Printf("  allowlist pass %d; blocklist drop %d (would %d); penalty box drop %d (would %d); out of state drop %d (would %d); SYN cookies answered %d (would %d, over budget %d, to user space %d, no fit %d, outside the budget for passed sources %d); not parsed %d\n",
			fl.AllowPass, fl.BlockDrop, fl.BlockWould, fl.PenaltyDrop, fl.PenaltyWould, fl.OutOfStateDrop, fl.OutOfStateWould,
			fl.CookieSent, fl.CookieWould, fl.CookieLimited, fl.CookieToUser, fl.CookieNoFit, fl.CookiePassed, fl.NotParsed)
		if len(fl.Lookups) > 0 {
			fmt.Printf("  source lists XDP looks up: %s (the others are empty)\n", strings.Join(fl.Lookups, ", "))
		}
		if fl.NoXDPTx {
			fmt.Println("  SYN cookies are answered from user space (the outer driver fails XDP_TX); XDP passes up at most first_line.user_space_rate SYNs/s (sources that passed a challenge aside) and drops the rest")
		}
	}
	if fp := snap.FastPath; fp != nil {
		fmt.Printf("fast path in the kernel: %d flows of %d (offloaded %d, released %d, refused by the full map %d); in %d pkts %d bytes, out %d pkts %d bytes; dropped %d (flow gone before the redirect) and %d (proxied, not translatable); errors %d\n",
			fp.Flows, fp.Capacity, fp.Offloaded, fp.Released, fp.Full, fp.InPackets, fp.InBytes, fp.OutPackets, fp.OutBytes, fp.Lost, fp.TranslateErrors, fp.Errors)
	}
	for _, l := range snap.Links {
		since := ""
		if !l.Since.IsZero() {
			since = " since " + l.Since.Format(time.RFC3339)
		}
		if l.Up {
			fmt.Printf("link %s (%s): up%s, down %d times\n", l.Side, l.Iface, since, l.Downs)
			continue
		}
		fmt.Printf("link %s (%s): DOWN%s (oper state %s), down %d times: frames for it are dropped (link_down, in drops(other))\n",
			l.Side, l.Iface, since, l.OperState, l.Downs)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "worker\tiface\tqueue\tbind\trx pkts\trx bytes\ttx pkts\tforward\tbounce\tdrop\tdrops(other)\tEAGAIN\tEBUSY\trx_dropped\tfill_empty\tfill_wakeups\tmeta_fallback\tcsum_completed\tcsum_by_kernel\t")
	for _, w := range ws {
		for _, p := range w.Ports {
			other := uint64(0)
			for r, n := range p.Drops {
				if r != "verdict" {
					other += n
				}
			}
			bind := p.BindMode
			if bind == "" {
				bind = "?"
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", w.Worker, p.Iface, p.Queue, bind,
				p.RxPackets, p.RxBytes, p.TxPackets, p.Verdicts["forward"], p.Verdicts["bounce"], p.Verdicts["drop"],
				other, p.KickAgain, p.KickBusy, p.XDP.RxDropped, p.XDP.RxFillRingEmptyDescs, p.FillWakeups, p.MetaFallback, p.ChecksumsCompleted, p.ChecksumsOffloaded)
		}
	}
	tw.Flush()
	for _, w := range ws {
		a := w.Frames
		fmt.Printf("worker %d frames: %d = %d free + %d fill + %d tx + %d quarantined\n", w.Worker, a.Total, a.Free, a.Fill, a.Tx, a.Quarantined)
	}
	return nil
}

// statsReply is the control socket's answer to "stats". It carries the
// violation counts too, so that one round trip serves a refresh of top.
type statsReply struct {
	gate.Snapshot
	FirstLine  *protect.FirstLineStats `json:"first_line,omitempty"`
	FastPath   *protect.FastPathStats  `json:"fast_path,omitempty"`
	Violations violationsReply         `json:"violations"`
}

// violationsReply is the integrity violations as top shows them: the
// non-zero counts by class and the first violations, oldest first. The
// "violations" command answers the same two fields, and the evidence.
type violationsReply struct {
	Counts map[string]uint64 `json:"counts"`
	First  []string          `json:"first"`
}
