package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/xskgate/xskgate/internal/config"
	"github.com/xskgate/xskgate/internal/control"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/protect"
)

// flowQuery is the flows command's filter as it crosses the control socket.
type flowQuery struct {
	States []string `json:"states,omitempty"`
	Dst    string   `json:"dst,omitempty"`
	Limit  int      `json:"limit,omitempty"`
}

func (q flowQuery) filter() (protect.FlowFilter, error) {
	f := protect.FlowFilter{Limit: q.Limit}
	for _, s := range q.States {
		st, ok := parseState(s)
		if !ok {
			return f, fmt.Errorf("unknown flow state %q", s)
		}
		f.States = append(f.States, st)
	}
	if q.Dst != "" {
		p, err := netip.ParsePrefix(q.Dst)
		if err != nil {
			a, aerr := netip.ParseAddr(q.Dst)
			if aerr != nil {
				return f, fmt.Errorf("--dst %q: not an address or prefix", q.Dst)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		f.Dst = p
	}
	return f, nil
}

func parseState(s string) (flow.State, bool) {
	for st := flow.State(0); st < flow.NumStates; st++ {
		if strings.EqualFold(st.String(), s) {
			return st, true
		}
	}
	return 0, false
}

func controlFlag(name, args, about string) (*flag.FlagSet, *string) {
	fs := newFlags(name, args, about)
	path := fs.String("control", config.Default().Control.Socket, "control socket path")
	return fs, path
}

func sortStrings(s []string) { slices.Sort(s) }

func cmdFlows(ctx context.Context, args []string) error {
	fs, path := controlFlag("flows", "[--state S,...] [--dst PREFIX] [--limit N]", "Lists the TCP flows a running daemon tracks.")
	states := fs.String("state", "", "comma-separated states, e.g. established,syn_sent")
	dst := fs.String("dst", "", "only flows to this address or prefix")
	limit := fs.Int("limit", 100, "at most this many flows")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := flowQuery{Dst: *dst, Limit: *limit}
	if *states != "" {
		q.States = strings.Split(*states, ",")
	}
	var flows []flow.FlowInfo
	if err := control.Call(ctx, *path, "flows", q, &flows); err != nil {
		return err
	}
	if len(flows) == 0 {
		fmt.Println("no flows")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORIGINAL\tREPLY\tFROM\tSTATE\tAGE\tEXPIRES\tPKTS ORIG/REPLY\tFLAGS")
	for _, f := range flows {
		var flags []string
		if f.Assured {
			flags = append(flags, "assured")
		}
		if f.PickedUp {
			flags = append(flags, "picked-up")
		}
		if f.SeqAdjust != 0 {
			flags = append(flags, "syn-proxied")
		}
		if f.Offloaded {
			flags = append(flags, "fast-path")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%ds\t%ds\t%d/%d\t%s\n",
			netip.AddrPortFrom(f.Src, f.SrcPort), netip.AddrPortFrom(f.Dst, f.DstPort), f.Dir, f.State,
			f.Age, f.ExpiresIn, f.Packets[0], f.Packets[1], strings.Join(flags, ","))
	}
	return tw.Flush()
}

func cmdDump(ctx context.Context, args []string) error {
	fs, path := controlFlag("dump", "[--control PATH]", "Writes the flight recorder of a running daemon to its dump directory now, and prints the file.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var file string
	if err := control.Call(ctx, *path, "dump", nil, &file); err != nil {
		return err
	}
	fmt.Println(file)
	return nil
}

func cmdViolations(ctx context.Context, args []string) error {
	fs, path := controlFlag("violations", "[--control PATH]", "Prints a running daemon's integrity violations: counts by class, the first ones, and the evidence files.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var out struct {
		Counts      map[string]uint64       `json:"counts"`
		First       []string                `json:"first"`
		Dumps       []string                `json:"dumps"`
		Capture     string                  `json:"capture"`
		Evidence    integrity.EvidenceStats `json:"evidence"`
		RateLimited map[string]uint64       `json:"frames_rate_limited"`
		Capped      map[string]uint64       `json:"frames_capped"`
	}
	if err := control.Call(ctx, *path, "violations", nil, &out); err != nil {
		return err
	}
	if len(out.Counts) == 0 {
		fmt.Println("no violations")
	}
	for c, n := range out.Counts {
		fmt.Printf("%-22s %d\n", c, n)
	}
	for _, v := range out.First {
		fmt.Println(v)
	}
	for _, d := range out.Dumps {
		fmt.Println("flight recorder dump:", d)
	}
	if out.Capture != "" {
		fmt.Println("pcapng capture:", out.Capture)
	}
	printEvidence(out.Evidence, out.RateLimited, out.Capped)
	return nil
}

// printEvidence says how much of the evidence cap is used and what was not
// written: frames over their class's rate or at the cap, dumps skipped.
func printEvidence(ev integrity.EvidenceStats, rate, capped map[string]uint64) {
	if ev.Dir == "" {
		fmt.Println("evidence: none written (no integrity.dump_dir)")
		return
	}
	state := ""
	if ev.CapReached {
		state = " (cap reached: what does not fit is not written; move old files away and restart)"
	}
	fmt.Printf("evidence: %d of %d bytes in %s%s\n", ev.Bytes, ev.MaxBytes, ev.Dir, state)
	fmt.Printf("not captured: %d frames over the capture rate%s, %d at the cap%s\n",
		sum(rate), byClass(rate), sum(capped), byClass(capped))
	fmt.Printf("not written: %d flight recorder dumps within a second of the last, %d dumps and %d ftrace buffers at the cap\n",
		ev.DumpsInterval, ev.DumpsCapped, ev.TraceCapped)
}

func sum(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

// byClass renders " (class n, ...)" sorted by class, or "".
func byClass(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for c, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", c, n))
	}
	sortStrings(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}

func cmdReload(ctx context.Context, args []string) error {
	fs, path := controlFlag("reload", "[--control PATH]", "Makes a running daemon re-read its config file (protection rules, check switches) without losing flows; same as SIGHUP.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var s string
	if err := control.Call(ctx, *path, "reload", nil, &s); err != nil {
		return err
	}
	fmt.Println(s)
	return nil
}

func cmdChecks(ctx context.Context, args []string) error {
	fs, path := controlFlag("checks", "[NAME=on|off ...]", "Shows or switches a running daemon's integrity checks (ownership, order, poison, bounds, metadata, ip_length).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	for _, a := range fs.Args() {
		k, v, ok := strings.Cut(a, "=")
		if !ok || (v != "on" && v != "off") {
			return fmt.Errorf("%q: want NAME=on or NAME=off", a)
		}
		set[k] = v == "on"
	}
	var now []checkState
	if err := control.Call(ctx, *path, "checks", set, &now); err != nil {
		return err
	}
	for _, c := range now {
		line := fmt.Sprintf("%-10s %s", c.Name, onOff(c.On))
		if c.Unavailable != "" {
			line += "  (cannot be on: " + c.Unavailable + ")"
		}
		fmt.Println(line)
	}
	for name, on := range set {
		for _, c := range now {
			if c.Name == name && on && !c.On && c.Unavailable != "" {
				return fmt.Errorf("integrity check %s cannot be switched on: %s", name, c.Unavailable)
			}
		}
	}
	return nil
}
