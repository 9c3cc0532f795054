package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/xskgate/xskgate/internal/config"
	"github.com/xskgate/xskgate/internal/control"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/protect"
)

// statusReply is the control socket's answer to "status".
type statusReply struct {
	Version    string          `json:"version"`
	Gate       gate.Status     `json:"gate"`
	Integrity  integrityStatus `json:"integrity"`
	Protection protect.Status  `json:"protection"`
}

// integrityStatus is which checks are on (as switched now) and what a
// violation does.
type integrityStatus struct {
	Checks  []checkState `json:"checks"`
	Policy  string       `json:"policy"`
	DumpDir string       `json:"dump_dir"`
}

type checkState struct {
	Name string `json:"name"`
	On   bool   `json:"on"`
	// Unavailable says why the check cannot be on here (the order check
	// with sockets bound in zero-copy), "" if it can.
	Unavailable string `json:"unavailable,omitempty"`
}

// checkStates is every integrity check as switched now.
func checkStates(c *integrity.Checks) []checkState {
	var out []checkState
	for ck := integrity.Check(0); ck < integrity.NumChecks; ck++ {
		st := checkState{Name: ck.String()}
		if c != nil {
			st.On, st.Unavailable = c.Enabled(ck), c.Unavailable(ck)
		}
		out = append(out, st)
	}
	return out
}

// String is "name on", "name off", or "name off (unavailable: why)".
func (c checkState) String() string {
	s := c.Name + " " + onOff(c.On)
	if c.Unavailable != "" {
		s += " (unavailable: " + c.Unavailable + ")"
	}
	return s
}

// statusOf gathers the daemon's setup for the "status" command.
func statusOf(g *gate.Gate, insp *protect.Inspector, cfg config.Config) statusReply {
	r := statusReply{Version: readBuildVersion().String(), Gate: g.Status(), Protection: insp.Status(),
		Integrity: integrityStatus{Policy: cfg.Integrity.Policy, DumpDir: cfg.Integrity.DumpDir}}
	r.Integrity.Checks = checkStates(g.Checks)
	return r
}

func cmdStatus(ctx context.Context, args []string) error {
	fs, path := controlFlag("status", "[--control PATH]",
		"Shows how a running daemon is set up, as the kernel reports it: per interface the XDP program\n"+
			"(id, attach mode), per queue the bind mode granted (zero-copy or copy) and need_wakeup, the\n"+
			"record carrier, the integrity checks on, and the protection's stages with their table sizes.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var r statusReply
	if err := control.Call(ctx, *path, "status", nil, &r); err != nil {
		return err
	}
	printStatus(os.Stdout, r)
	return nil
}

func onOff(b bool) string { return map[bool]string{true: "on", false: "off"}[b] }
func yesNo(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] }

func printStatus(w io.Writer, r statusReply) {
	g := r.Gate
	fmt.Fprintf(w, "%s\n", r.Version)
	fmt.Fprintf(w, "record carrier: %s (%s)\n", g.Carrier, g.CarrierWhy)
	if g.Checksums != "" {
		fmt.Fprintf(w, "partial checksums: %s (%s)\n", g.Checksums, g.ChecksumsWhy)
	}
	switch g.FastPath {
	case "on":
		fmt.Fprintf(w, "fast path: on (established flows cross in the kernel: XDP_PASS, then a tc redirect; room for %d)\n", g.FastPathFlows)
	case "off":
		fmt.Fprintf(w, "fast path: OFF, asked for but unavailable (%s)\n", g.FastPathWhy)
	case "not asked":
		fmt.Fprintln(w, "fast path: off (protection.fast_path.enabled: false)")
	}
	fmt.Fprintf(w, "UMEM: %d frames of %d bytes, headroom %d\n", g.Frames, g.FrameSize, g.Headroom)
	for _, i := range g.Interfaces {
		fl := ""
		if i.FirstLine {
			fl = ", with the first line"
		}
		fmt.Fprintf(w, "\n%s: %s (ifindex %d)\n", i.Side, i.Iface, i.Ifindex)
		fmt.Fprintf(w, "  xdp program %s, id %d, bpf_link %d, attached %s%s\n", i.Program, i.ProgramID, i.LinkID, i.AttachMode, fl)
		switch {
		case i.KernelProgramID == 0:
			fmt.Fprintf(w, "  kernel: NO XDP program attached (frames reach the host stack)\n")
		case i.KernelProgramID != i.ProgramID:
			fmt.Fprintf(w, "  kernel: program id %d (%s) is attached, NOT xskgate's %d\n", i.KernelProgramID, i.KernelMode, i.ProgramID)
		default:
			fmt.Fprintf(w, "  kernel: program id %d attached, %s\n", i.KernelProgramID, i.KernelMode)
		}
		if i.Err != "" {
			fmt.Fprintf(w, "  error: %s\n", i.Err)
		}
		noDiag := false
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  queue\tbind mode\tasked\tneed_wakeup\tshared umem\tfill\tcomp\trx\ttx\ttx batch")
		for _, s := range i.Sockets {
			mode := s.BindMode
			if s.Err != "" {
				mode = "? (" + s.Err + ")"
			}
			wake := yesNo(s.NeedWakeup)
			if !s.Diag {
				wake += "*"
				noDiag = true
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", s.Queue, mode, s.Asked, wake,
				yesNo(s.SharedUmem), s.Fill, s.Comp, s.RX, s.TX, s.TxBatch)
		}
		tw.Flush()
		if noDiag {
			fmt.Fprintln(w, "  * as configured: AF_XDP sock_diag did not answer (a kernel without CONFIG_XDP_SOCKETS_DIAG)")
		}
	}

	var checks []string
	for _, c := range r.Integrity.Checks {
		checks = append(checks, c.String())
	}
	dir := r.Integrity.DumpDir
	if dir == "" {
		dir = "none (no dump_dir)"
	}
	fmt.Fprintf(w, "\nintegrity checks: %s\n  on a violation: %s; evidence in %s\n", strings.Join(checks, ", "), r.Integrity.Policy, dir)

	p := r.Protection
	state := "enabled"
	if !p.Enabled {
		state = "off (flows still tracked; nothing dropped)"
	}
	fmt.Fprintf(w, "\nprotection: %s, %d workers\n", state, p.Workers)
	fmt.Fprintf(w, "  protected prefixes: %s; allowlist %d prefixes, blocklist %d\n", orNone(p.Prefixes), p.Allowlist, p.Blocklist)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(p.Rules) > 0 {
		fmt.Fprintln(tw, "  rule\tscope\tout_of_state\tsyn_flood\taction\tper source")
		for _, ru := range p.Rules {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", ru.Name, ru.Scope, ru.OutOfState, ru.SynFlood, ru.Action, yesNo(ru.PerSource))
		}
		tw.Flush()
	} else {
		fmt.Fprintln(w, "  no rules: protected TCP is tracked, never dropped")
	}
	sp := p.SynProxy
	fmt.Fprintf(w, "  syn proxy: mss %d, wscale %d, sack %s, window %d; at most %d challenges/s (burst %d)",
		sp.MSS, sp.WScale, onOff(sp.SACK), sp.Window, sp.ChallengeRate, sp.ChallengeBurst)
	if sp.PassedTTL != "" && sp.PassedTTL != "0s" {
		fmt.Fprintf(w, "; sources that passed one: outside that for %s, %d/s each (burst %d)", sp.PassedTTL, sp.PassedRate, sp.PassedBurst)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "  table\tentries\tcapacity\twhat")
	for _, t := range p.Tables {
		capacity := fmt.Sprint(t.Capacity)
		if t.Capacity == 0 {
			capacity = "none yet" // allocated when a rule first needs it
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.Name, entries(t.Entries), capacity, t.What)
	}
	tw.Flush()
	fl := p.FirstLine
	if fl == nil {
		fmt.Fprintln(w, "  first line in XDP: none (protection disabled at start, or first_line.mode: disabled)")
		return
	}
	fmt.Fprintf(w, "  first line in XDP: stages %s; monitor only: %s\n", orNone(fl.Stages), orNone(fl.Monitor))
	if fl.NoXDPTx {
		fmt.Fprintln(w, "  (syn_cookie answers from user space: the outer driver fails XDP_TX; XDP only drops SYNs over the challenge budget)")
	}
	if fl.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", fl.Error)
	}
	fmt.Fprintln(tw, "  map\ttype\tentries\tmax entries")
	for _, m := range fl.Maps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\n", m.Name, m.Type, entries(m.Entries), m.MaxEntries)
	}
	tw.Flush()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func entries(n int) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
