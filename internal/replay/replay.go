// Package replay runs a scenario on the kernel model: traffic through the
// real engine and integrity checks, with one kind of kernel fault injected
// at a seeded rate. The same seed replays the same faults on the same
// frames and ring slots, detected the same way, so a failure seen once can
// be studied at leisure, without root and without the kernel that had the
// bug. (Which UMEM frame was in FILL at that moment depends on goroutine
// timing, so addresses may differ between replays.)
package replay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Faults lists the fault names Scenario.Fault takes.
var Faults = []string{"none", "veth-race", "duplicate", "drop", "wrong-length", "bad-addr", "skip-fill", "spurious-completion", "lost-completion"}

// txAgeLimit is the checks' TX age limit in a replay: short, so a lost
// completion is reported within the run.
const txAgeLimit = 200 * time.Millisecond

// Scenario is one run.
type Scenario struct {
	Fault   string  // one of Faults
	Rate    float64 // probability per frame (per TX descriptor for spurious- and lost-completion)
	Limit   int     // at most this many injections (0: no limit)
	Seed    uint64
	Frames  int  // frames to send (default 100000)
	Queues  int  // queue pairs (default 1)
	Poison  bool // poison consumed slots (the integrity default)
	DumpDir string
	Logger  *slog.Logger
}

// Result is what the run saw.
type Result struct {
	Sent, Delivered, Malformed, Duplicates uint64
	KernelDrops                            uint64
	Injected                               []kmodel.Injection
	Counts                                 map[string]uint64
	Violations                             []integrity.Violation
	Evidence                               []string
	Accounting                             engine.Accounting
	Elapsed                                time.Duration
}

func faults(s Scenario) (kmodel.Faults, bool, error) {
	f := kmodel.Faults{Seed: s.Seed, Limit: s.Limit}
	onInner := false
	switch s.Fault {
	case "none", "":
	case "veth-race":
		f.VethRace = s.Rate
	case "duplicate":
		f.Duplicate = s.Rate
	case "drop":
		f.Drop = s.Rate
	case "wrong-length":
		f.WrongLength = s.Rate
	case "bad-addr":
		f.BadAddr = s.Rate
	case "skip-fill":
		f.SkipFill = s.Rate
	case "spurious-completion":
		// Completions come back on the port that transmitted: inner.
		f.SpuriousCompletion = s.Rate
		onInner = true
	case "lost-completion":
		f.LostCompletion = s.Rate
		onInner = true
	default:
		return f, false, fmt.Errorf("unknown fault %q: use one of %s", s.Fault, strings.Join(Faults, ", "))
	}
	return f, onInner, nil
}

// Run runs the scenario and returns what happened.
func Run(ctx context.Context, s Scenario) (*Result, error) {
	if s.Frames == 0 {
		s.Frames = 100000
	}
	if s.Queues == 0 {
		s.Queues = 1
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f, onInner, err := faults(s)
	if err != nil {
		return nil, err
	}
	const fs, frames, ring = 4096, 4096, 512
	area := make([]byte, fs*frames)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: fs, NumFrames: frames})
	if err != nil {
		return nil, err
	}
	ic := integrity.DefaultConfig()
	ic.Poison, ic.DumpDir, ic.Logger, ic.RxOffset = s.Poison, s.DumpDir, s.Logger, u.RxOffset()
	ic.TxAgeLimit = txAgeLimit
	checks, err := integrity.New(u, ic)
	if err != nil {
		return nil, err
	}
	defer checks.Close()
	traffic := kmodel.Traffic{Seed: s.Seed}
	sink := kmodel.NewSink(traffic)
	var outer, inner []*kmodel.Port
	var pairs []engine.Pair
	for q := 0; q < s.Queues; q++ {
		mk := func(name string, ff kmodel.Faults) (*kmodel.Port, error) {
			ff.Seed += uint64(q) // one stream per queue, still reproducible
			return kmodel.NewPort(kmodel.Config{Umem: area, FrameSize: fs, Ifname: name, Queue: q,
				FillSize: ring, CompSize: ring, RxSize: ring, TxSize: ring, Faults: ff})
		}
		of, inf := f, kmodel.Faults{}
		if onInner {
			of, inf = kmodel.Faults{}, f
		}
		o, err := mk("outer", of)
		if err != nil {
			return nil, err
		}
		defer o.Close()
		i, err := mk("inner", inf)
		if err != nil {
			return nil, err
		}
		defer i.Close()
		i.SetPeer(sink)
		outer, inner = append(outer, o), append(inner, i)
		pairs = append(pairs, engine.Pair{Outer: o, Inner: i})
	}
	e, err := engine.New(u, pairs, engine.Config{NewChecker: checks.NewChecker, Logger: s.Logger})
	if err != nil {
		return nil, err
	}
	e.Prime()
	for q := range outer {
		outer[q].Start()
		inner[q].Start()
	}
	e.Start()
	start := time.Now()
	res := &Result{}
	buf := make([]byte, 4096)
	drops := func() (n uint64) {
		for _, p := range outer {
			st, _ := p.Stats()
			n += st.RxDropped + st.RxRingFull
		}
		return n
	}
	// A paced sender: keep a window in flight, as TCP would, so that the
	// model's FILL rings are not simply overrun.
	for res.Sent < uint64(s.Frames) && ctx.Err() == nil {
		if res.Sent-sink.Stats().Received-drops() > 256 && time.Since(start) < time.Minute {
			time.Sleep(20 * time.Microsecond)
			continue
		}
		p := outer[res.Sent%uint64(len(outer))]
		if p.Deliver(traffic.Frame(buf, res.Sent)) {
			res.Sent++
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
	// Frames lost to a fault never arrive: wait until nothing moves.
	last, since := sink.Stats().Received, time.Now()
	for time.Since(since) < 300*time.Millisecond && sink.Stats().Received+drops() < res.Sent {
		if r := sink.Stats().Received; r != last {
			last, since = r, time.Now()
		}
		time.Sleep(time.Millisecond)
	}
	// A completion the kernel never writes is reported by the TX age
	// limit: give it the time (between 1 and 1.5 limits).
	lost := func() (n int) {
		for _, p := range inner {
			n += len(p.Injected())
		}
		return n
	}
	if onInner && f.LostCompletion > 0 {
		for deadline := time.Now().Add(4 * txAgeLimit); time.Now().Before(deadline) &&
			checks.Counts()[integrity.TxOverdue] < uint64(lost()); {
			time.Sleep(time.Millisecond)
		}
	}
	checks.Close()
	stopErr := e.Stop(200 * time.Millisecond)
	res.Elapsed = time.Since(start)
	st := sink.Stats()
	res.Delivered, res.Malformed, res.Duplicates = st.Unique, st.Malformed, st.Duplicates
	res.KernelDrops = drops()
	for q := range outer {
		res.Injected = append(res.Injected, outer[q].Injected()...)
		res.Injected = append(res.Injected, inner[q].Injected()...)
	}
	res.Counts = map[string]uint64{}
	for cl, n := range checks.Counts() {
		if n > 0 {
			res.Counts[integrity.Class(cl).String()] = n
		}
	}
	res.Violations = checks.Violations()
	res.Evidence = slices.DeleteFunc(append(checks.Dumps(), checks.CapturePath()), func(s string) bool { return s == "" })
	res.Accounting = e.Accounting()
	return res, stopErr
}

// Print writes the report.
func (r *Result) Print(w io.Writer, s Scenario) {
	fmt.Fprintf(w, "replay: fault %s at rate %g (limit %d), seed %d, %d frames on %d queue pair(s), poison %v\n",
		s.Fault, s.Rate, s.Limit, s.Seed, r.Sent, max(s.Queues, 1), s.Poison)
	fmt.Fprintf(w, "traffic:    %d delivered exactly once, %d duplicates, %d malformed, %d dropped by the model's kernel (counted), in %.2fs\n",
		r.Delivered, r.Duplicates, r.Malformed, r.KernelDrops, r.Elapsed.Seconds())
	fmt.Fprintf(w, "injected:   %d fault(s)\n", len(r.Injected))
	for i, in := range r.Injected {
		if i == 5 {
			fmt.Fprintf(w, "  ...\n")
			break
		}
		fmt.Fprintf(w, "  %s: frame %d, ring slot %d, addr %#x, len %d, fill entry %#x\n", in.Kind, in.N, in.Slot, in.Addr, in.Len, in.Fill)
	}
	fmt.Fprintf(w, "detected:   %v\n", r.Counts)
	for i, v := range r.Violations {
		if i == 5 {
			fmt.Fprintf(w, "  ...\n")
			break
		}
		fmt.Fprintf(w, "  %s\n", v)
	}
	for _, e := range r.Evidence {
		fmt.Fprintf(w, "evidence:   %s\n", e)
	}
	a := r.Accounting
	fmt.Fprintf(w, "frames:     %d = %d free + %d fill + %d tx + %d quarantined: %s\n", a.Total, a.Free, a.Fill, a.Tx, a.Quarantined,
		map[bool]string{true: "balanced", false: "NOT BALANCED"}[a.Balanced()])
}
