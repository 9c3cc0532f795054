package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/demo"
	"github.com/xskgate/xskgate/internal/protect"
	"github.com/xskgate/xskgate/internal/traffic"
)

// LegitOptions shape the measurement of legitimate TCP through the gate
// under a flood (Options.Legit).
type LegitOptions struct {
	Duration time.Duration // verified TCP per run (default 3s)
	Conns    int           // parallel connections (default 4)
	Size     int64         // bytes each way per connection (default 1 MiB)
	// Rate of the flood, frames/s; 0: twice the AF_XDP path's capacity,
	// taken from this bench run (what the gate's worker received in the
	// user-space ACK flood case, else xskgate's delivered rate), else
	// 0.4 Mpps.
	Rate float64
	// Floods to run (default FloodACK, FloodSYN).
	Floods []string
	// ClientXDP adds, as a labelled extra, a no-flood baseline and each
	// flood with the first line on, with an XDP_PASS program on the
	// client's eth0: it gives that veth the NAPI that frames sent back
	// with XDP_TX from the gate's outer need (a NIC has it), so the first
	// line's cookies reach the client.
	ClientXDP bool
	// FastPath adds, as a labelled extra, a no-flood baseline and each
	// flood with the first line on, with the protection's fast path:
	// established connections, SYN-proxied ones included, cross in the
	// kernel and leave the worker to the flood.
	FastPath bool
}

// legitCase is one column of the comparison.
type legitCase struct {
	name      string
	flood     string // "": no flood
	firstLine bool
	clientXDP bool // extra: XDP_PASS on the client's eth0 (LegitOptions.ClientXDP)
	fastPath  bool // extra: the fast path (LegitOptions.FastPath)
}

// legitRun is one run's outcome.
type legitRun struct {
	gbps        float64 // verified bytes (both ways) per second
	ok, failed  int64   // connections
	offered     float64 // flood frames/s sent
	atServer    uint64  // flood frames that reached the server's eth0
	burst       uint64  // the rule's burst
	allowed     uint64  // what the rules let through in that time: burst + rate * t
	floodTime   time.Duration
	kernelDrops uint64 // frames the kernel dropped at the gate's outer socket
	busy        uint64 // send(2) calls of the ring generator that found the device busy
	firstErrs   []string
}

const legitPort = 5201

// legit measures verified TCP (internal/traffic) from the client to the
// server through the gate with the TCP protection on, without a flood and
// under each flood with the first line on and off, interleaved.
func (b *bencher) legit(ctx context.Context, res []*Result) error {
	l, o, out := b.l, b.o.LegitOpts, b.o.Out
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.Conns == 0 {
		o.Conns = 4
	}
	if o.Size == 0 {
		o.Size = 1 << 20
	}
	if len(o.Floods) == 0 {
		o.Floods = []string{FloodACK, FloodSYN}
	}
	rate, why := o.Rate, "set with --legit-rate"
	if rate == 0 {
		rate, why = 2*0.4e6, "twice 0.4 Mpps: this run measured no AF_XDP capacity"
		for i, v := range b.o.Variants {
			if v.Flood == FloodACK && !v.FirstLine && len(res[i].Handled) > 0 {
				rate, why = 2*median(res[i].Handled), fmt.Sprintf("twice what the gate's worker took in %s (median %.3f Mpps)", v.Name, median(res[i].Handled)/1e6)
				break
			}
			if v.Name == "xskgate" && len(res[i].PPS) > 0 {
				rate, why = 2*median(res[i].PPS), fmt.Sprintf("twice xskgate's delivered rate (median %.3f Mpps)", median(res[i].PPS)/1e6)
			}
		}
	}
	cases := []legitCase{{"no flood", "", true, false, false}}
	for _, f := range o.Floods {
		cases = append(cases, legitCase{f + " flood, first line on", f, true, false, false}, legitCase{f + " flood, first line off", f, false, false, false})
	}
	if o.ClientXDP {
		cases = append(cases, legitCase{"no flood, client XDP", "", true, true, false})
		for _, f := range o.Floods {
			cases = append(cases, legitCase{f + " flood, on, client XDP", f, true, true, false})
		}
	}
	if o.FastPath {
		cases = append(cases, legitCase{"no flood, fast path", "", true, false, true})
		for _, f := range o.Floods {
			cases = append(cases, legitCase{f + " flood, on, fast path", f, true, false, true})
		}
	}
	fmt.Fprintf(out, "\nlegitimate TCP under flood: %d connections at a time, %s each way, verified (SHA-256), for %s per run, through xskgate with the protection (demo rules) on; flood at %.3f Mpps (%s), %s warm-up; %d interleaved rounds\n",
		o.Conns, human(o.Size), o.Duration, rate/1e6, why, b.o.Warmup, b.o.Runs)

	// The server: a verifying TCP server, and a counter of flood frames
	// (sources outside the lab's subnet) at its eth0.
	var srv *traffic.Server
	if err := l.Do(l.ServerNS, func() error {
		ln, err := net.Listen("tcp4", netip.AddrPortFrom(l.ServerIP4, legitPort).String())
		if err != nil {
			return err
		}
		srv = traffic.Serve(ln)
		return nil
	}); err != nil {
		return fmt.Errorf("start the traffic server: %w", err)
	}
	defer srv.Close()
	cnt, err := newFloodCounter()
	if err != nil {
		return err
	}
	defer cnt.Close()
	var att link.Link
	if err := l.Do(l.ServerNS, func() error {
		var err error
		att, err = link.AttachTCX(link.TCXOptions{Interface: l.ServerIndex, Program: cnt.prog, Attach: ebpf.AttachTCXIngress})
		return err
	}); err != nil {
		return fmt.Errorf("attach the flood counter to the server's eth0: %w", err)
	}
	defer att.Close()

	// CPU GenCPU is the generator's: the bench's other threads (the
	// verified TCP's clients and server, the Go runtime; the gate's worker
	// is pinned to GateCPU already) leave it, so that the flood keeps its
	// rate whatever the legitimate traffic does, and every case runs on
	// the same cores.
	restore, err := confine(b.o.GateCPU)
	if err != nil {
		return err
	}
	defer restore()
	fmt.Fprintf(out, "(CPU %d is the generator's and its NAPI's alone; the bench's other threads, the TCP endpoints and their stacks share CPU %d with the gate's worker)\n", b.o.GenCPU, b.o.GateCPU)

	runs := make([][]legitRun, len(cases))
	for round := 0; round < b.o.Runs; round++ {
		for i, c := range cases {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := b.legitRun(ctx, o, c, rate, cnt)
			if err != nil {
				return fmt.Errorf("legitimate TCP, %s, round %d: %w", c.name, round+1, err)
			}
			runs[i] = append(runs[i], r)
			fmt.Fprintf(out, "  run %d %-26s %6.3f Gbit/s verified (%d connections, %d failed)", round+1, c.name, r.gbps, r.ok, r.failed)
			if c.flood != "" {
				fmt.Fprintf(out, "; flood %.3f Mpps offered, %d frames at the server in %.1fs (burst %d, rules allow %d in that time), %d lost at the gate's socket, generator found the device busy %d times",
					r.offered/1e6, r.atServer, r.floodTime.Seconds(), r.burst, r.allowed, r.kernelDrops, r.busy)
			}
			fmt.Fprintln(out)
			for _, e := range r.firstErrs {
				fmt.Fprintf(out, "      %s\n", e)
			}
		}
	}
	reportLegit(out, cases, runs)
	for i, c := range cases {
		if c.flood == "" {
			continue
		}
		var off []float64
		var busy uint64
		for _, r := range runs[i] {
			off = append(off, r.offered)
			busy += r.busy
		}
		if m := median(off); m < 0.9*rate {
			fmt.Fprintf(out, "note: %s: the flood reached %.3f of its %.3f Mpps (median); the generator found the veth busy (ENOBUFS) %d times: the flood and the legitimate client share outer's one queue, and while packets sent from CPU %d have its NAPI run there, the generator waits for that CPU\n",
				c.name, m/1e6, rate/1e6, busy, b.o.GateCPU)
		}
	}
	return nil
}

// reportLegit prints the medians, the throughput kept against the
// no-flood baseline, and the flood frames that reached the server beyond
// what the rules allow.
func reportLegit(w io.Writer, cases []legitCase, runs [][]legitRun) {
	gbps := func(rs []legitRun) []float64 {
		v := make([]float64, len(rs))
		for k, r := range rs {
			v[k] = r.gbps
		}
		return v
	}
	// Each case is compared with the no-flood case of its own setting.
	baseOf := func(i int) int {
		for j := range cases {
			if cases[j].flood == "" && cases[j].clientXDP == cases[i].clientXDP && cases[j].fastPath == cases[i].fastPath {
				return j
			}
		}
		return 0
	}
	fmt.Fprintf(w, "\n%-26s %8s %5s %12s %14s %16s %13s %13s\n", "legitimate TCP", "Gbit/s", "kept", "round kept", "flood offered", "at server", "beyond burst", "beyond rate")
	for i, c := range cases {
		g := gbps(runs[i])
		b := baseOf(i)
		base := median(gbps(runs[b]))
		var kept []float64
		for k, r := range runs[i] {
			if k < len(runs[b]) && runs[b][k].gbps > 0 {
				kept = append(kept, r.gbps/runs[b][k].gbps)
			}
		}
		keptS := "-"
		if len(kept) > 0 && c.flood != "" {
			keptS = fmt.Sprintf("%.2f..%.2f", slices.Min(kept), slices.Max(kept))
		}
		ratio := 0.0
		if base > 0 {
			ratio = median(g) / base
		}
		if c.flood == "" {
			fmt.Fprintf(w, "%-26s %8.3f %5.2f %12s %14s %16s %13s %13s\n", c.name, median(g), ratio, keptS, "-", "-", "-", "-")
			continue
		}
		var off, at, overBurst []float64
		var overRate, maxAt uint64
		for _, r := range runs[i] {
			off = append(off, r.offered)
			at = append(at, float64(r.atServer))
			maxAt = max(maxAt, r.atServer)
			overBurst = append(overBurst, float64(r.atServer-min(r.atServer, r.burst)))
			if r.atServer > r.allowed {
				overRate += r.atServer - r.allowed
			}
		}
		fmt.Fprintf(w, "%-26s %8.3f %5.2f %12s %9.3f Mpps %6.0f (max %d) %13.0f %13d\n", c.name, median(g), ratio, keptS,
			median(off)/1e6, median(at), maxAt, median(overBurst), overRate)
	}
	fmt.Fprintf(w, "(kept: median Gbit/s over the no-flood median of the same setting (client XDP, fast path, or neither); round kept: each run over that no-flood run of its round; at server: flood frames per run (median) at the server's eth0, warm-up included; beyond burst: median per run of those above the rule's burst; beyond rate: sum over runs of those above burst + rate * flood time)\n")
	// First line on against off, per flood, round by round.
	for i := 1; i+1 < len(cases); i += 2 {
		if cases[i].clientXDP || cases[i+1].clientXDP || cases[i].fastPath || cases[i+1].fastPath || !cases[i].firstLine || cases[i+1].firstLine {
			break
		}
		on, off := runs[i], runs[i+1]
		var r []float64
		for k := range min(len(on), len(off)) {
			if off[k].gbps > 0 {
				r = append(r, on[k].gbps/off[k].gbps)
			}
		}
		if len(r) > 0 {
			fmt.Fprintf(w, "%s: first line on / off, verified Gbit/s: ratio of medians %.2f, per-round %.2f..%.2f (median %.2f)\n",
				cases[i].flood+" flood", median(gbps(on))/max(median(gbps(off)), 1e-9), slices.Min(r), slices.Max(r), median(r))
		}
	}
}

// legitRun runs one case: the gate with the protection (and its first line
// or not), a flood if the case has one, and verified TCP for o.Duration.
func (b *bencher) legitRun(ctx context.Context, o LegitOptions, c legitCase, rate float64, cnt *floodCounter) (r legitRun, err error) {
	l := b.l
	d, err := b.openGate(Variant{Checks: true, FastPath: c.fastPath}, true, c.firstLine, benchFlows)
	if err != nil {
		return r, err
	}
	defer d.teardown()
	if c.clientXDP {
		undo, err := b.clientXDPPass()
		if err != nil {
			return r, err
		}
		defer undo()
	}
	n0, err := cnt.read()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	var (
		gen     source
		stop    = make(chan struct{})
		genErr  = make(chan error, 1)
		stopped bool
	)
	stopGen := func() error {
		if gen == nil || stopped {
			return nil
		}
		stopped = true
		close(stop)
		return <-genErr
	}
	defer func() {
		if e := stopGen(); e != nil && err == nil {
			err = e
		}
		if gen != nil {
			gen.Close()
		}
	}()
	if c.flood != "" {
		frame, vary := b.frameFor(Variant{Flood: c.flood})
		if gen, err = newSource(l, b.gen, frame, vary, b.o.Warmup+o.Duration+2*time.Minute, b.o.GenNice); err != nil {
			return r, err
		}
		go func() {
			genErr <- l.Do(l.ClientNS, func() error { return gen.Run(b.o.GenCPU, rate, stop) })
		}()
		// The first line engages within its controller's tick.
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case err := <-genErr:
			stopped = true
			return r, fmt.Errorf("generator stopped: %w", err)
		case <-time.After(b.o.Warmup):
		}
	}
	s0 := uint64(0)
	if gen != nil {
		s0 = gen.Sent()
	}
	tctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	deadline, _ := tctx.Deadline()
	var (
		wg         sync.WaitGroup
		bytes      atomic.Int64
		ok, failed atomic.Int64
		mu         sync.Mutex
		seq        atomic.Uint64
	)
	start := time.Now()
	for range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				n := seq.Add(1)
				var conn net.Conn
				derr := l.Do(l.ClientNS, func() error {
					var err error
					conn, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(tctx, "tcp4", netip.AddrPortFrom(l.ServerIP4, legitPort).String())
					return err
				})
				var res traffic.Result
				if derr != nil {
					res.Err = derr
				} else {
					// A connection that started in time may finish, within
					// a bound: an exchange cut by the deadline is not lost
					// to the gate.
					ectx, ecancel := context.WithDeadline(ctx, deadline.Add(10*time.Second))
					res = traffic.Exchange(ectx, conn, n, o.Size, o.Size)
					ecancel()
				}
				switch {
				case res.Err == nil:
					ok.Add(1)
					bytes.Add(res.Up + res.Down)
				case !time.Now().Before(deadline) && !errors.Is(res.Err, traffic.ErrMismatch):
					// Cut off by the end of the run.
				default:
					failed.Add(1)
					mu.Lock()
					if len(r.firstErrs) < 2 {
						r.firstErrs = append(r.firstErrs, fmt.Sprintf("%.2fs: %v", time.Since(start).Seconds(), res.Err))
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if gen != nil {
		r.offered = float64(gen.Sent()-s0) / elapsed.Seconds()
		if rg, ok := gen.(*RingGenerator); ok {
			r.busy = rg.Busy()
		}
	}
	if err := stopGen(); err != nil {
		return r, fmt.Errorf("generator: %w", err)
	}
	n1, err := cnt.read()
	if err != nil {
		return r, err
	}
	r.floodTime = time.Since(t0)
	r.gbps = float64(bytes.Load()) * 8 / elapsed.Seconds() / 1e9
	r.ok, r.failed = ok.Load(), failed.Load()
	if c.flood != "" {
		r.atServer = n1 - n0
		r.burst, r.allowed = allowed(c.flood, r.floodTime)
	}
	for _, sk := range d.g.Outer {
		if st, err := sk.Stats(); err == nil {
			r.kernelDrops += st.RxDropped + st.RxRingFull
		}
	}
	return r, nil
}

// allowed returns the burst of the demo rule a flood toward the lab's
// server meets, and how many frames it lets through in t: the burst, then
// its rate (a rate of 0 means always over threshold: none).
func allowed(flood string, t time.Duration) (burst, n uint64) {
	cfg := demo.DemoProtection()
	var rate, b uint32
	for _, ru := range cfg.Rules {
		if ru.Scope.Contains(netip.MustParseAddr("198.18.0.2")) {
			if flood == FloodSYN {
				rate, b = ru.SynFlood.Rate, ru.SynFlood.Burst
			} else {
				rate, b = ru.OutOfState.Rate, ru.OutOfState.Burst
			}
			if ru.Mode == protect.ModeDisabled {
				return ^uint64(0), ^uint64(0)
			}
		}
	}
	if rate == 0 {
		return 0, 0
	}
	if b == 0 {
		b = rate
	}
	return uint64(b), uint64(b) + uint64(float64(rate)*t.Seconds())
}

// confine sets the CPU affinity of every thread of the process to cpu
// (threads made later inherit it from their creator) and returns the
// undo, which gives them all the CPUs they had.
func confine(cpu int) (func(), error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("read CPU affinity: %w", err)
	}
	set.Set(cpu)
	each := func(s *unix.CPUSet) error {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			// A thread that exited meanwhile is not an error.
			if err := unix.SchedSetaffinity(tid, s); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("thread %d: %w", tid, err)
			}
		}
		return nil
	}
	if err := each(&set); err != nil {
		each(&old)
		return nil, fmt.Errorf("confine the bench's threads to CPU %d: %w", cpu, err)
	}
	return func() { each(&old) }, nil
}

// floodCounter is a tc program that counts IPv4 frames whose source is
// outside the lab's subnet 198.18.0.0/24 (the floods' sources) and
// passes every frame on.
type floodCounter struct {
	prog *ebpf.Program
	m    *ebpf.Map // per-CPU count
}

func newFloodCounter() (*floodCounter, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "xskgate_fcount", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("create flood counter map: %w", err)
	}
	const pass = "pass"
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 76, asm.Word), // skb->data
		asm.LoadMem(asm.R3, asm.R1, 80, asm.Word), // skb->data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 34),
		asm.JGT.Reg(asm.R4, asm.R3, pass),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R4, 0x0008, pass), // ETH_P_IP, loaded little-endian
		asm.LoadMem(asm.R4, asm.R2, 26, asm.Word),
		asm.And.Imm(asm.R4, 0x00ffffff),
		asm.JEq.Imm(asm.R4, 0x0012c6, pass), // 198.18.0.x, little-endian
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, pass),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(pass), // TCX_PASS
		asm.Return(),
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xskgate_fcount", Type: ebpf.SchedCLS, License: "GPL", Instructions: insns})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load flood counter: %w", err)
	}
	return &floodCounter{prog: p, m: m}, nil
}

func (c *floodCounter) read() (uint64, error) {
	var per []uint64
	if err := c.m.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read flood counter: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

func (c *floodCounter) Close() error { return errors.Join(c.prog.Close(), c.m.Close()) }

// human formats a byte count.
func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
