package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/xskgate/xskgate/internal/control"
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
)

// topSample is one reading of the daemon: its counters and violations
// (one "stats" call), and when they were read.
type topSample struct {
	at    time.Time
	stats statsReply
}

// clearScreen moves the cursor home and clears the terminal, as
// xdp-monitor does between refreshes.
const clearScreen = "\x1b[H\x1b[2J"

func cmdTop(ctx context.Context, args []string) error {
	fs, path := controlFlag("top", "[--interval D] [--once] [--count N]",
		"A live view of a running daemon: rates per queue and direction (the difference between two\n"+
			"readings of the control socket's stats), drops by reason, the kernel's drops, ring occupancy,\n"+
			"the workers' heartbeat and integrity violations. In a terminal it refreshes in place; otherwise\n"+
			"(or with --once) it prints one block per interval. Ctrl-C stops it.")
	interval := fs.Duration("interval", time.Second, "time between readings")
	once := fs.Bool("once", false, "print one block (two readings --interval apart) and exit")
	count := fs.Int("count", 0, "exit after this many blocks (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *interval < 10*time.Millisecond {
		return fmt.Errorf("--interval %s is too short: use at least 10ms, e.g. --interval 1s", *interval)
	}
	if *count < 0 {
		return fmt.Errorf("--count %d: use 0 (until interrupted) or a positive count", *count)
	}
	if *once {
		*count = 1
	}
	tty := !*once && term.IsTerminal(int(os.Stdout.Fd()))
	prev, err := sampleTop(ctx, *path)
	if err != nil {
		return err
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	for n := 0; *count == 0 || n < *count; n++ {
		select {
		case <-ctx.Done():
			return nil // Ctrl-C is how top is left
		case <-t.C:
		}
		cur, err := sampleTop(ctx, *path)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var b strings.Builder
		renderTop(&b, prev, cur)
		if tty {
			fmt.Print(clearScreen + b.String())
		} else {
			fmt.Println(b.String())
		}
		prev = cur
	}
	return nil
}

func sampleTop(ctx context.Context, path string) (topSample, error) {
	s := topSample{at: time.Now()}
	err := control.Call(ctx, path, "stats", nil, &s.stats)
	return s, err
}

// rate is the per-second growth of a counter between two readings; a
// counter that went down (a restarted daemon) reads 0.
func rate(prev, cur uint64, secs float64) float64 {
	if cur < prev || secs <= 0 {
		return 0
	}
	return float64(cur-prev) / secs
}

// portKey finds a port's previous reading.
type portKey struct {
	side  string
	queue int
}

// renderTop writes one block: the change from prev to cur.
func renderTop(w io.Writer, prev, cur topSample) {
	secs := cur.at.Sub(prev.at).Seconds()
	st := cur.stats
	links := make([]string, 0, len(st.Links))
	for _, l := range st.Links {
		state := "up"
		if !l.Up {
			state = "DOWN"
		}
		links = append(links, fmt.Sprintf("%s %s", l.Side, state))
	}
	fmt.Fprintf(w, "xskgate top  %s  over %.2fs  carrier %s  links: %s\n\n",
		cur.at.Format("15:04:05"), secs, st.Carrier, orNone(links))

	old := map[portKey]gate.PortSnapshot{}
	oldW := map[int]gate.WorkerSnapshot{}
	for _, ws := range prev.stats.Workers {
		oldW[ws.Worker] = ws
		for _, p := range ws.Ports {
			old[portKey{p.Side, p.Queue}] = p
		}
	}
	type dirTotal struct{ pps, bps float64 }
	var dirs [2]dirTotal // by side received on
	drops := map[string][2]uint64{}
	kernel := map[string][2]uint64{}
	add := func(m map[string][2]uint64, k string, was, now uint64) {
		v := m[k]
		v[0] += was
		v[1] += now
		m[k] = v
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "queue\tside\trx pkt/s\trx Mbit/s\ttx pkt/s\ttx Mbit/s\tforward/s\tbounce/s\tdrop/s\tFILL\tRX\tTX\tCOMP\t")
	for _, ws := range st.Workers {
		for _, p := range ws.Ports {
			o := old[portKey{p.Side, p.Queue}]
			rxp, rxb := rate(o.RxPackets, p.RxPackets, secs), rate(o.RxBytes, p.RxBytes, secs)
			txp, txb := rate(o.TxPackets, p.TxPackets, secs), rate(o.TxBytes, p.TxBytes, secs)
			if i := slices.Index([]string{"outer", "inner"}, p.Side); i >= 0 {
				dirs[i].pps += rxp
				dirs[i].bps += rxb * 8
			}
			var dropNow, dropWas uint64
			for r, n := range p.Drops {
				add(drops, r, o.Drops[r], n)
				dropNow, dropWas = dropNow+n, dropWas+o.Drops[r]
			}
			add(kernel, "rx_dropped", o.XDP.RxDropped, p.XDP.RxDropped)
			add(kernel, "rx_ring_full", o.XDP.RxRingFull, p.XDP.RxRingFull)
			add(kernel, "fill_ring_empty", o.XDP.RxFillRingEmptyDescs, p.XDP.RxFillRingEmptyDescs)
			add(kernel, "rx_invalid_descs", o.XDP.RxInvalidDescs, p.XDP.RxInvalidDescs)
			add(kernel, "tx_invalid_descs", o.XDP.TxInvalidDescs, p.XDP.TxInvalidDescs)
			r := p.Rings
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.1f\t%.0f\t%.1f\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t\n", p.Queue, p.Side,
				rxp, rxb*8/1e6, txp, txb*8/1e6,
				rate(o.Verdicts["forward"], p.Verdicts["forward"], secs), rate(o.Verdicts["bounce"], p.Verdicts["bounce"], secs),
				rate(dropWas, dropNow, secs), level(r.Fill), level(r.RX), level(r.TX), level(r.Comp))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nfrom outer: %.0f pkt/s, %.1f Mbit/s   from inner: %.0f pkt/s, %.1f Mbit/s\n",
		dirs[0].pps, dirs[0].bps/1e6, dirs[1].pps, dirs[1].bps/1e6)
	fmt.Fprintf(w, "drops/s by reason: %s\n", rates(drops, secs, dropOrder()))
	// tx_ring_empty_descs is left out: with need_wakeup an empty TX ring
	// is the normal idle state, not a loss.
	fmt.Fprintf(w, "kernel drops/s (XDP_STATISTICS): %s\n", rates(kernel, secs,
		[]string{"rx_dropped", "rx_ring_full", "fill_ring_empty", "rx_invalid_descs", "tx_invalid_descs"}))

	for _, ws := range st.Workers {
		o := oldW[ws.Worker]
		a := ws.Frames
		beat := rate(o.Iterations, ws.Iterations, secs)
		stuck := ""
		if beat == 0 && secs > 0 {
			stuck = "  NO HEARTBEAT: the worker is stuck (see xskgate violations, the log)"
		}
		fmt.Fprintf(w, "worker %d: %.0f loops/s, %.0f sleeps/s; frames %d free, %d fill, %d tx, %d quarantined%s\n",
			ws.Worker, beat, rate(o.Sleeps, ws.Sleeps, secs), a.Free, a.Fill, a.Tx, a.Quarantined, stuck)
	}
	if fl := st.FirstLine; fl != nil {
		var pf = prev.stats.FirstLine
		if pf == nil {
			pf = fl
		}
		fmt.Fprintf(w, "first line in XDP /s: blocklist %.0f, penalty box %.0f, out of state %.0f dropped; %.0f SYN cookies answered\n",
			rate(pf.BlockDrop, fl.BlockDrop, secs), rate(pf.PenaltyDrop, fl.PenaltyDrop, secs),
			rate(pf.OutOfStateDrop, fl.OutOfStateDrop, secs), rate(pf.CookieSent, fl.CookieSent, secs))
	}
	renderViolations(w, prev.stats.Violations, cur.stats.Violations)
}

// level renders a ring's occupancy as entries/size, "-" without the ring.
func level(l gate.RingLevel) string {
	if l.Size == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", l.Entries, l.Size)
}

func dropOrder() []string {
	var out []string
	for r := engine.DropReason(0); r < engine.NumDropReasons; r++ {
		out = append(out, r.String())
	}
	return out
}

// rates renders "name rate (total)" for each key in order, "none" when all
// are zero since start.
func rates(m map[string][2]uint64, secs float64, order []string) string {
	for k := range m {
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	var parts []string
	for _, k := range order {
		v := m[k]
		if v[1] == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f (%d since start)", k, rate(v[0], v[1], secs), v[1]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func renderViolations(w io.Writer, prev, cur violationsReply) {
	var total, was uint64
	var parts []string
	classes := make([]string, 0, len(cur.Counts))
	for c := range cur.Counts {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	for _, c := range classes {
		n := cur.Counts[c]
		total += n
		was += prev.Counts[c]
		parts = append(parts, fmt.Sprintf("%s %d (+%d)", c, n, n-min(n, prev.Counts[c])))
	}
	if total == 0 {
		fmt.Fprintln(w, "integrity violations: none")
		return
	}
	fmt.Fprintf(w, "INTEGRITY VIOLATIONS: %d (+%d): %s\n", total, total-min(total, was), strings.Join(parts, ", "))
	for i, v := range cur.First {
		if i == 3 {
			fmt.Fprintf(w, "  ... %d more: xskgate violations\n", len(cur.First)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", v)
	}
}
