package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xskgate/xskgate/internal/xdpprog"
)

// The XDP program's own cost per frame, measured with plain BPF_PROG_RUN
// (not live frames, which this kernel refuses): the kernel times the
// program alone, without a driver, a copy or a socket, so 1/cost is the
// ceiling of one core running it. Each run is one syscall with a fresh
// copy of the frame and Repeat 1: a cookie SYN-ACK rewrites its frame and
// the record carrier grows it, so repeating a run on the same buffer would
// measure something else from the second time on. The kernel's figure
// then includes its timer and bottom-half toggling around the program
// (tens of ns); the same for every case.

// progCase is one frame through one program set-up.
type progCase struct {
	name  string
	frame []byte
	want  uint32 // XDP action expected (checked, so the case measures what it says)
	// firstLine: run it through the first line (configured by
	// setupFirstLine), else through the plain redirect program.
	firstLine bool
	// bare: run the bare XDP_DROP program instead: the measurement's own
	// cost around any program.
	bare bool
}

const (
	xdpDrop = 1
	xdpPass = 2 // a redirect to an empty XSKMAP slot falls back to XDP_PASS
	xdpTx   = 3
)

// Addresses of the cost cases, in 198.18.0.0/15.
var (
	costServer  = netip.MustParseAddr("198.18.0.2") // out of state and challenged
	costServer2 = netip.MustParseAddr("198.18.0.3") // out of state only
	costBlocked = netip.MustParseAddr("198.19.200.1")
	costAllowed = netip.MustParseAddr("198.19.201.1")
	costTracked = netip.MustParseAddr("198.19.202.1")
	costMAC1    = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	costMAC2    = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

func progCases() []progCase {
	ack := func(src netip.Addr) []byte {
		return tcpFrame(costMAC2, costMAC1, src, costServer, 40000, 80, 0x12345678, 0x9abcdef0, 0x10, 512, nil)
	}
	return []progCase{
		{"bare XDP_DROP (the measurement's floor)", TCPFloodAckFrame(costMAC2, costMAC1, costServer2), xdpDrop, false, true},
		{"ACK flood: out of state, dropped", TCPFloodAckFrame(costMAC2, costMAC1, costServer2), xdpDrop, true, false},
		{"ACK flood, scope also challenged", TCPFloodAckFrame(costMAC2, costMAC1, costServer), xdpDrop, true, false},
		{"SYN 60 B: cookie SYN-ACK (XDP_TX)", TCPSynFrame(costMAC2, costMAC1, costServer), xdpTx, true, false},
		{"SYN 74 B: cookie SYN-ACK (XDP_TX)", TCPSynFrameLinux(costMAC2, costMAC1, costServer), xdpTx, true, false},
		{"blocklisted source, dropped", ack(costBlocked), xdpDrop, true, false},
		{"allowlisted source, redirected", ack(costAllowed), xdpPass, true, false},
		{"tracked flow, redirected", ack(costTracked), xdpPass, true, false},
		{"plain redirect (no first line)", ack(costTracked), xdpPass, false, false},
	}
}

// setupFirstLine configures fl as under attack: every stage on, one
// server's scope flagged out of state and challenged (a non-SYN to it is
// checked for a cookie before it is dropped), another's out of state only,
// no challenge budget (every SYN is answered), and the lists and flow map
// the cases need.
func setupFirstLine(fl *xdpprog.FirstLine) error {
	return errors.Join(
		// As the Inspector configures it: the lists hold entries, the
		// penalty box is empty.
		fl.Configure(xdpprog.FirstLineConfig{Stages: xdpprog.AllStages, Key0: 1, Key1: 2, MSS4: 1460, MSS6: 1440, WScale: 7, SACK: true,
			HasAllow: true, HasBlock: true}),
		fl.Set(xdpprog.Scopes, netip.PrefixFrom(costServer, 32), xdpprog.ScopeOutOfState|xdpprog.ScopeChallenge),
		fl.Set(xdpprog.Scopes, netip.PrefixFrom(costServer2, 32), xdpprog.ScopeOutOfState),
		fl.Set(xdpprog.Blocklist, netip.PrefixFrom(costBlocked, 32), 1),
		fl.Set(xdpprog.Allowlist, netip.PrefixFrom(costAllowed, 32), 1),
		func() error {
			var b xdpprog.FlowBatch
			b.Add(xdpprog.Flow{Src: costTracked, Dst: costServer, SrcPort: 40000, DstPort: 80})
			return fl.AddFlows(&b)
		}(),
	)
}

// ProgCostResult is one case's cost: per round, the mean ns per frame,
// one run per syscall; and for a case whose program leaves the frame as
// it was (the drops), the same in one syscall repeating the run in the
// kernel, as NAPI runs a batch (Repeat; empty otherwise).
type ProgCostResult struct {
	Name     string
	Ns       []float64
	Repeated []float64
}

// ProgCost measures the XDP program's cost per frame of each case, runs
// frames per case per round, interleaved over rounds rounds, on a thread
// pinned to cpu, and prints the medians with the Mpps one core could run.
func ProgCost(out io.Writer, carrier xdpprog.Carrier, cpu, rounds, runs int) ([]ProgCostResult, error) {
	with, err := xdpprog.Load(1, xdpprog.Options{Carrier: carrier, FirstLine: true, Flows: 1 << 16})
	if err != nil {
		return nil, err
	}
	defer with.Close()
	if err := setupFirstLine(with.FirstLine()); err != nil {
		return nil, fmt.Errorf("set up the first line: %w", err)
	}
	plain, err := xdpprog.Load(1, xdpprog.Options{Carrier: carrier})
	if err != nil {
		return nil, err
	}
	defer plain.Close()
	bare, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xskgate_drop", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpDrop), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("load XDP_DROP program: %w", err)
	}
	defer bare.Close()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	undo, err := pinThread(cpu, 0)
	if err != nil {
		return nil, err
	}
	defer undo()

	cases := progCases()
	res := make([]ProgCostResult, len(cases))
	for round := 0; round < rounds; round++ {
		for i, c := range cases {
			p := plain.Raw()
			switch {
			case c.bare:
				p = bare
			case c.firstLine:
				p = with.Raw()
			}
			var total time.Duration
			for range runs {
				ret, d, err := p.Benchmark(c.frame, 1, nil)
				if err != nil {
					return nil, fmt.Errorf("BPF_PROG_RUN %s: %w", c.name, err)
				}
				if ret != c.want {
					return nil, fmt.Errorf("BPF_PROG_RUN %s: returned %d, want %d", c.name, ret, c.want)
				}
				total += d
			}
			res[i].Name = c.name
			res[i].Ns = append(res[i].Ns, float64(total.Nanoseconds())/float64(runs))
			if c.want == xdpDrop {
				ret, d, err := p.Benchmark(c.frame, runs, nil)
				if err != nil || ret != c.want {
					return nil, fmt.Errorf("BPF_PROG_RUN %s, repeated: returned %d, %v", c.name, ret, err)
				}
				res[i].Repeated = append(res[i].Repeated, float64(d.Nanoseconds()))
			}
		}
	}
	fmt.Fprintf(out, "\nXDP program cost per frame (BPF_PROG_RUN, not live: the program alone, no driver; %s carrier; %d rounds of %d runs per case, interleaved, on CPU %d)\n",
		carrier, rounds, runs, cpu)
	fmt.Fprintf(out, "%-40s %9s %14s %9s %12s %9s\n", "case", "ns/frame", "min-max", "Mpps/core", "repeated ns", "Mpps/core")
	for _, r := range res {
		m := median(r.Ns)
		rep := fmt.Sprintf("%12s %9s", "-", "-")
		if len(r.Repeated) > 0 {
			rm := median(r.Repeated)
			rep = fmt.Sprintf("%12.1f %9.2f", rm, 1e3/rm)
		}
		fmt.Fprintf(out, "%-40s %9.1f %6.1f-%-7.1f %9.2f %s\n", r.Name, m, slices.Min(r.Ns), slices.Max(r.Ns), 1e3/m, rep)
	}
	fmt.Fprintf(out, "(ns/frame: one run per syscall, fresh frame, the kernel's timing of the program and its own toggles around it, see the floor; repeated: drops only, whose frame stays as it was, run %d times in one syscall as NAPI runs a batch)\n", runs)
	return res, nil
}
