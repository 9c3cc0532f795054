// Package demo is xskgate's self-contained main job: build the lab, open
// the gate between its namespaces, push verified TCP traffic from client to
// server through it, show progress, report, and tear everything down (also
// on Ctrl-C).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/protect"
	"github.com/xskgate/xskgate/internal/traffic"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// demoFlows sizes the demo's flow table and the first line's flow map.
const demoFlows = 1 << 16

// Options tune the demo.
type Options struct {
	Duration time.Duration // traffic time (default 10s)
	Conns    int           // parallel connections (default 8)
	Size     int64         // bytes each way per connection (default 4 MiB)
	Queues   int           // queues per interface (default 2)
	XDPMode  xdpprog.Mode
	Carrier  xdpprog.Carrier // how the XDP program hands over its record (default auto)
	Prefix   string          // lab prefix (default random)
	Progress bool            // live progress line
	Out      io.Writer
	Logger   *slog.Logger
	// Inspector, when set, replaces the TCP protection stage.
	Inspector engine.Inspector
	// NoChecks turns the integrity checks off (they are on by default).
	NoChecks bool
	// DumpDir receives integrity evidence (flight-recorder dumps, pcapng);
	// empty: none written.
	DumpDir string
	// InjectFillWhileTx plants the FILL-while-on-TX user bug (see engine).
	InjectFillWhileTx float64
	// Hook, when set, runs with the gate open before traffic starts.
	Hook func(*lab.Lab, *gate.Gate) error
}

// Report is what the demo measured.
type Report struct {
	Elapsed          time.Duration
	ConnsOK, ConnsKO int
	Errors           []string
	BytesVerified    int64
	Ping4, Ping6     string // "ok", "failed: ...", or "skipped: ..."
	Sides            [2]SideStats
	Accounting       engine.Accounting
	AccountingAtStop engine.Accounting
	XDP              [2]xsk.Statistics
	ServerRxPackets  uint64 // kernel counter of the server's eth0
	ClientRxPackets  uint64
	Violations       map[string]uint64 // integrity violations by class
	FirstViolations  []string
	Evidence         []string       // dump and capture files
	Protection       *protect.Stats // nil when a custom Inspector ran
}

// SideStats sums one interface's counters over its queues.
type SideStats struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
	Verdicts                               [3]uint64
	Drops                                  [engine.NumDropReasons]uint64
	KickAgain, KickBusy, KickErrors        uint64
}

func sum(e *engine.Engine) [2]SideStats {
	var s [2]SideStats
	for _, w := range e.Workers() {
		for side := range s {
			p := &w.Stats[side]
			s[side].RxPackets += p.RxPackets.Load()
			s[side].RxBytes += p.RxBytes.Load()
			s[side].TxPackets += p.TxPackets.Load()
			s[side].TxBytes += p.TxBytes.Load()
			for v := range s[side].Verdicts {
				s[side].Verdicts[v] += p.Verdicts[v].Load()
			}
			for r := range s[side].Drops {
				s[side].Drops[r] += p.Drops[r].Load()
			}
			s[side].KickAgain += p.KickAgain.Load()
			s[side].KickBusy += p.KickBusy.Load()
			s[side].KickErrors += p.KickErrors.Load()
		}
	}
	return s
}

func (s SideStats) drops() (n uint64) {
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// Run runs the demo. Everything it creates is removed before it returns,
// whatever happens; ctx cancellation (Ctrl-C) ends the traffic early.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Conns == 0 {
		o.Conns = 8
	}
	if o.Size == 0 {
		o.Size = 4 << 20
	}
	if o.Queues == 0 {
		o.Queues = 2
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	out := o.Out
	rep = &Report{}

	fmt.Fprintf(out, "lab: building namespaces client | gate (outer, inner) | server with %d queues per veth...\n", o.Queues)
	l, err := lab.UpContext(ctx, lab.Config{Prefix: o.Prefix, Queues: o.Queues})
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
		fmt.Fprintf(out, "lab: removed %s-{client,gate,server}\n", l.Prefix)
	}()
	fmt.Fprintf(out, "lab: %s-client %s %s  <->  [outer | %s-gate | inner]  <->  %s-server %s %s\n",
		l.Prefix, l.ClientIP4, l.ClientIP6, l.Prefix, l.Prefix, l.ServerIP4, l.ServerIP6)

	var insp *protect.Inspector
	if o.Inspector == nil {
		// The lab's addresses are the protected prefix: out-of-state
		// segments are dropped, SYN floods challenged with SYN cookies.
		// Legitimate connections are tracked from their SYN and pass.
		insp, err = protect.New(DemoProtection(), protect.Options{Logger: o.Logger, FlowCapacity: demoFlows})
		if err != nil {
			return nil, err
		}
		o.Inspector = insp
	}
	var ic *integrity.Config
	if !o.NoChecks {
		c := integrity.DefaultConfig()
		c.DumpDir = o.DumpDir
		ic = &c
	}
	var g *gate.Gate
	err = l.Do(l.GateNS, func() error {
		var err error
		g, err = gate.Open(gate.Config{
			Outer: lab.OuterName, Inner: lab.InnerName, Queues: o.Queues,
			Umem:    xsk.UmemConfig{NumFrames: 16384},
			XDPMode: o.XDPMode, Carrier: o.Carrier, Logger: o.Logger,
			Engine:    engine.Config{Inspector: o.Inspector, InjectFillWhileTx: o.InjectFillWhileTx},
			Integrity: ic,
			FirstLine: insp != nil, FirstLineFlows: demoFlows,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if insp != nil {
		if err := insp.SetFirstLine(g.FirstLine(), g.XDPTxErrors); err != nil {
			g.Close()
			return nil, err
		}
		flCtx, stopFL := context.WithCancel(ctx)
		defer stopFL()
		go insp.RunFirstLine(flCtx)
	}
	g.Start()
	closed := false
	closeGate := func() error {
		if closed {
			return nil
		}
		closed = true
		rep.Accounting = g.Engine.Accounting()
		for s, socks := range [2][]*xsk.Socket{g.Outer, g.Inner} {
			for _, sk := range socks {
				st, _ := sk.Stats()
				rep.XDP[s] = addStats(rep.XDP[s], st)
			}
		}
		if g.Checks != nil {
			rep.Violations = map[string]uint64{}
			for cl, n := range g.Checks.Counts() {
				if n > 0 {
					rep.Violations[integrity.Class(cl).String()] = n
				}
			}
			for _, v := range g.Checks.Violations() {
				if len(rep.FirstViolations) < 5 {
					rep.FirstViolations = append(rep.FirstViolations, v.String())
				}
			}
		}
		if insp != nil {
			st := insp.Stats()
			rep.Protection = &st
		}
		cerr := g.Close()
		if g.Checks != nil {
			rep.Evidence = append(g.Checks.Dumps(), g.Checks.CapturePath())
		}
		// After the drain: the workers' counters are final now.
		rep.Sides = sum(g.Engine)
		rep.AccountingAtStop = g.Engine.Accounting()
		return cerr
	}
	defer func() {
		if cerr := closeGate(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	fmt.Fprintf(out, "gate: xskgate forwarding outer <-> inner on %d queues (AF_XDP copy mode, one shared UMEM of %d frames, XDP %s mode)\n",
		o.Queues, g.Umem.NumFrames(), o.XDPMode)
	carrier, why := g.Carrier()
	fmt.Fprintf(out, "gate: XDP record carrier %s (%s)\n", carrier, why)
	if o.Hook != nil {
		if err := o.Hook(l, g); err != nil {
			return nil, err
		}
	}

	rep.Ping4 = ping(ctx, l, l.ServerIP4)
	rep.Ping6 = ping(ctx, l, l.ServerIP6)
	fmt.Fprintf(out, "ping: client -> server IPv4 %s, IPv6 %s\n", rep.Ping4, rep.Ping6)

	var srv4, srv6 *traffic.Server
	err = l.Do(l.ServerNS, func() error {
		ln4, err := net.Listen("tcp4", netip.AddrPortFrom(l.ServerIP4, 5201).String())
		if err != nil {
			return err
		}
		ln6, err := net.Listen("tcp6", netip.AddrPortFrom(l.ServerIP6, 5201).String())
		if err != nil {
			ln4.Close()
			return err
		}
		srv4, srv6 = traffic.Serve(ln4), traffic.Serve(ln6)
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer srv4.Close()
	defer srv6.Close()

	fmt.Fprintf(out, "traffic: %d parallel TCP connections, %s each way per connection, IPv4 and IPv6, for %s\n",
		o.Conns, human(o.Size), o.Duration)
	tctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	deadline, _ := tctx.Deadline()
	// The dialer stops at the deadline a moment before the context says it
	// has expired: judge "cut off by the end of the run" by the clock.
	over := func() bool { return tctx.Err() != nil || !time.Now().Before(deadline) }
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		verified atomic.Int64
		seq      atomic.Uint64
	)
	start := time.Now()
	for i := 0; i < o.Conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !over() {
				n := seq.Add(1)
				dst := netip.AddrPortFrom(l.ServerIP4, 5201)
				if n%2 == 0 {
					dst = netip.AddrPortFrom(l.ServerIP6, 5201)
				}
				var c net.Conn
				derr := l.Do(l.ClientNS, func() error {
					var err error
					c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(tctx, "tcp", dst.String())
					return err
				})
				var res traffic.Result
				if derr != nil {
					res.Err = derr
					if errors.Is(derr, os.ErrNotExist) {
						// The lab is gone (deleted under us): nothing
						// more can be sent; stop instead of spinning.
						mu.Lock()
						rep.ConnsKO++
						if len(rep.Errors) < 10 {
							rep.Errors = append(rep.Errors, fmt.Sprintf("%.2fs: %v: stopping the traffic", time.Since(start).Seconds(), derr))
						}
						mu.Unlock()
						cancel()
						return
					}
				} else {
					// Finish a connection that started in time: an
					// interrupted transfer is not a failure of the gate.
					res = traffic.Exchange(ctx, c, n, o.Size, o.Size)
				}
				mu.Lock()
				switch {
				case res.Err == nil:
					rep.ConnsOK++
					verified.Add(res.Up + res.Down)
				case over() && !errors.Is(res.Err, traffic.ErrMismatch):
					// Cut off by the end of the run.
				default:
					rep.ConnsKO++
					if len(rep.Errors) < 10 {
						rep.Errors = append(rep.Errors, fmt.Sprintf("%.2fs %s: %v", time.Since(start).Seconds(), dst, res.Err))
					}
				}
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	progress(out, o.Progress, g.Engine, start, &verified, done)
	rep.Elapsed = time.Since(start)
	rep.BytesVerified = verified.Load()

	// Close first: the gate drains its TX, so the kernel counters read
	// next are final and comparable with the gate's own.
	if err := closeGate(); err != nil {
		return rep, err
	}
	rep.ServerRxPackets, _, _ = l.LinkStats(l.ServerNS, lab.HostIfName)
	rep.ClientRxPackets, _, _ = l.LinkStats(l.ClientNS, lab.HostIfName)
	rep.print(out)
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	if rep.ConnsKO > 0 || rep.ConnsOK == 0 {
		return rep, fmt.Errorf("%d of %d connections failed verification", rep.ConnsKO, rep.ConnsOK+rep.ConnsKO)
	}
	return rep, nil
}

func addStats(a, b xsk.Statistics) xsk.Statistics {
	a.RxDropped += b.RxDropped
	a.RxInvalidDescs += b.RxInvalidDescs
	a.TxInvalidDescs += b.TxInvalidDescs
	a.RxRingFull += b.RxRingFull
	a.RxFillRingEmptyDescs += b.RxFillRingEmptyDescs
	a.TxRingEmptyDescs += b.TxRingEmptyDescs
	return a
}

func ping(ctx context.Context, l *lab.Lab, dst netip.Addr) string {
	if _, err := exec.LookPath("ping"); err != nil {
		return "skipped: ping not installed (apt-get install iputils-ping)"
	}
	c := l.Command(ctx, l.ClientNS, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst.String())
	if b, err := c.CombinedOutput(); err != nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return "failed: " + lines[len(lines)-1]
	}
	return "ok"
}

// progress prints a line a second until done.
func progress(out io.Writer, live bool, e *engine.Engine, start time.Time, verified *atomic.Int64, done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastT := sum(e), time.Now()
	for {
		select {
		case <-done:
			if live {
				fmt.Fprintln(out)
			}
			return
		case now := <-tick.C:
			cur := sum(e)
			dt := now.Sub(lastT).Seconds()
			pk := float64(cur[0].RxPackets+cur[1].RxPackets-last[0].RxPackets-last[1].RxPackets) / dt
			by := float64(cur[0].RxBytes+cur[1].RxBytes-last[0].RxBytes-last[1].RxBytes) / dt
			drops := cur[0].drops() + cur[1].drops()
			line := fmt.Sprintf("%5.1fs  %8.0f pkt/s  %6.2f Gbit/s  drops %d  verified %s  (rss %s, %d goroutines)",
				now.Sub(start).Seconds(), pk, by*8/1e9, drops, human(verified.Load()), human(rss()), runtime.NumGoroutine())
			if live {
				fmt.Fprintf(out, "\r%s   ", line)
			} else {
				fmt.Fprintln(out, line)
			}
			last, lastT = cur, now
		}
	}
}

// rss is the process's resident set in bytes (0 if unknown): a soak must
// show it flat.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (r *Report) print(out io.Writer) {
	fmt.Fprintf(out, "\n=== xskgate demo report ===\n")
	fmt.Fprintf(out, "traffic:     %d connections verified byte for byte (SHA-256 both ways), %d failed, %s verified in %.1fs\n",
		r.ConnsOK, r.ConnsKO, human(r.BytesVerified), r.Elapsed.Seconds())
	for _, e := range r.Errors {
		fmt.Fprintf(out, "  error: %s\n", e)
	}
	fmt.Fprintf(out, "ping:        IPv4 %s, IPv6 %s\n", r.Ping4, r.Ping6)
	for s, name := range []string{"outer", "inner"} {
		st := r.Sides[s]
		fmt.Fprintf(out, "%-6s AF_XDP rx %d pkts (%s), tx %d pkts; verdicts forward %d bounce %d drop %d; drops:",
			name, st.RxPackets, human(int64(st.RxBytes)), st.TxPackets, st.Verdicts[0], st.Verdicts[1], st.Verdicts[2])
		for reason, n := range st.Drops {
			fmt.Fprintf(out, " %s=%d", engine.DropReason(reason), n)
		}
		fmt.Fprintf(out, "; sendto EAGAIN %d EBUSY %d errors %d\n", st.KickAgain, st.KickBusy, st.KickErrors)
		x := r.XDP[s]
		fmt.Fprintf(out, "       XDP_STATISTICS rx_dropped %d rx_ring_full %d fill_empty %d tx_invalid %d\n",
			x.RxDropped, x.RxRingFull, x.RxFillRingEmptyDescs, x.TxInvalidDescs)
	}
	fmt.Fprintf(out, "kernel:      server eth0 received %d pkts, client eth0 received %d pkts (all of them crossed the gate's AF_XDP sockets: the gate has no other path)\n",
		r.ServerRxPackets, r.ClientRxPackets)
	if r.Violations == nil {
		fmt.Fprintf(out, "integrity:   checks off\n")
	} else if len(r.Violations) == 0 {
		fmt.Fprintf(out, "integrity:   every ring hand-over checked (ownership, FILL->RX order, poison, bounds, XDP length, IP length): 0 violations\n")
	} else {
		fmt.Fprintf(out, "integrity:   violations %v\n", r.Violations)
		for _, v := range r.FirstViolations {
			fmt.Fprintf(out, "  %s\n", v)
		}
		for _, e := range r.Evidence {
			if e != "" {
				fmt.Fprintf(out, "  evidence: %s\n", e)
			}
		}
	}
	if p := r.Protection; p != nil {
		fmt.Fprintf(out, "protection:  TCP judged: pass %d, drop %d, challenge %d\n",
			p.Count("", "pass", ""), p.Count("", "drop", ""), p.Count("", "challenge", ""))
	}
	a := r.AccountingAtStop
	fmt.Fprintf(out, "frames:      %d total = %d free + %d fill + %d tx + %d quarantined at shutdown: %s\n",
		a.Total, a.Free, a.Fill, a.Tx, a.Quarantined, map[bool]string{true: "balanced", false: "NOT BALANCED"}[a.Balanced()])
}

// Interactive reports whether f is a terminal (for the live line).
func Interactive(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// DemoProtection is the protection the demo runs: the lab's addresses are
// the protected prefixes, in mitigate mode.
func DemoProtection() protect.Config {
	return protect.Config{
		Enabled:  true,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("2001:2::/64")},
		Rules: []protect.Rule{{
			Name: "lab", Scope: netip.MustParsePrefix("198.18.0.0/24"), Mode: protect.ModeMitigate,
			SynFlood: protect.SynFloodRule{Rate: 2000, Burst: 2000, Action: protect.ActionChallenge},
		}, {
			Name: "lab6", Scope: netip.MustParsePrefix("2001:2::/64"), Mode: protect.ModeMitigate,
			SynFlood: protect.SynFloodRule{Rate: 2000, Burst: 2000, Action: protect.ActionChallenge},
		}},
	}
}
