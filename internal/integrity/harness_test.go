package integrity

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// gate is the engine on kernel-model ports with the checks plugged in: the
// real worker code, the real rings, a software kernel with fault injection.
type gate struct {
	ring         uint32 // ring sizes
	umem         *xsk.Umem
	area         []byte
	outer, inner []*kmodel.Port
	sink         *kmodel.Sink
	checks       *Checks
	e            *engine.Engine
	traffic      kmodel.Traffic
	src          *kmodel.Source
	sent         int
	stopped      bool
}

type gateOpts struct {
	queues      int
	frames      uint32
	headroom    uint32
	ring        uint32
	batch       int
	poison      bool
	outerFaults kmodel.Faults
	innerFaults kmodel.Faults
	traffic     kmodel.Traffic
	cfg         *Config // nil: DefaultConfig with RxOffset set
	ecfg        engine.Config
	noChecks    bool
	// record is how the modelled XDP program hands over its record; the
	// checks and the engine are told the matching carrier, or carrier
	// when it is set.
	record  kmodel.Record
	carrier xdpprog.Carrier
	// zeroCopy runs the model's zero-copy driver (driverRing buffers,
	// xdpDrop) and tells the checks, as the gate does for sockets bound
	// in zero-copy; rxRing, when set, sizes the RX rings alone.
	zeroCopy   bool
	driverRing int
	xdpDrop    float64
	rxRing     uint32
	// txMeta gives the UMEM a TX metadata area, which the engine uses to
	// leave partial checksums to the (modelled) kernel.
	txMeta bool
}

// carrierOf is the xdpprog carrier that reads what kmodel writes with r.
func carrierOf(r kmodel.Record) xdpprog.Carrier {
	return [...]xdpprog.Carrier{kmodel.RecordMeta: xdpprog.CarrierMeta, kmodel.RecordHead: xdpprog.CarrierHead, kmodel.RecordNone: xdpprog.CarrierNone}[r]
}

// records are the carriers the model-based tests run with.
var records = []kmodel.Record{kmodel.RecordMeta, kmodel.RecordHead, kmodel.RecordNone}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newGate(tb testing.TB, o gateOpts) *gate {
	tb.Helper()
	const fs = 4096
	if o.queues == 0 {
		o.queues = 1
	}
	if o.frames == 0 {
		o.frames = 4096
	}
	if o.ring == 0 {
		o.ring = 1024
	}
	area := make([]byte, int(o.frames)*fs)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: fs, NumFrames: o.frames, Headroom: o.headroom, TxMetadata: o.txMeta})
	if err != nil {
		tb.Fatal(err)
	}
	g := &gate{ring: o.ring, umem: u, area: area, traffic: o.traffic, sink: kmodel.NewSink(o.traffic), src: kmodel.NewSource(o.traffic)}
	cfg := DefaultConfig()
	if o.cfg != nil {
		cfg = *o.cfg
	}
	cfg.RxOffset = u.RxOffset()
	if cfg.TxAgeLimit == 0 {
		// Sweep every 50 ms: every model run exercises the TX age
		// limit, and must not trip it.
		cfg.TxAgeLimit = 100 * time.Millisecond
	}
	// As the gate: the checks learn each socket's mode from the port
	// (XDP_OPTIONS) and then ignore RxOffset on a zero-copy one; the
	// order check is unavailable once any socket is zero-copy.
	cfg.ZeroCopy = o.zeroCopy
	if o.carrier == xdpprog.CarrierAuto {
		o.carrier = carrierOf(o.record)
	}
	cfg.Carrier = o.carrier
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if g.checks, err = New(u, cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.checks.Close() })
	if o.rxRing == 0 {
		o.rxRing = o.ring
	}
	var pairs []engine.Pair
	for q := range o.queues {
		mk := func(name string, f kmodel.Faults) *kmodel.Port {
			p, err := kmodel.NewPort(kmodel.Config{Umem: area, FrameSize: fs, Headroom: o.headroom, Ifname: name, Queue: q,
				FillSize: o.ring, CompSize: o.ring, RxSize: o.rxRing, TxSize: o.ring, Faults: f, Record: o.record,
				ZeroCopy: o.zeroCopy, DriverRing: o.driverRing, XDPDrop: o.xdpDrop, TxMetadataLen: u.TxMetadataLen()})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { p.Close() })
			_, comp, rx, _ := p.Rings()
			rx.SetPoison(o.poison)
			comp.SetPoison(o.poison)
			return p
		}
		out, in := mk("outer", o.outerFaults), mk("inner", o.innerFaults)
		in.SetPeer(g.sink)
		g.outer, g.inner = append(g.outer, out), append(g.inner, in)
		pairs = append(pairs, engine.Pair{Outer: out, Inner: in})
	}
	ecfg := o.ecfg
	ecfg.Batch = o.batch
	ecfg.Carrier = o.carrier
	ecfg.Logger = quietLogger()
	if !o.noChecks {
		ecfg.NewChecker = g.checks.NewChecker
	}
	if g.e, err = engine.New(u, pairs, ecfg); err != nil {
		tb.Fatal(err)
	}
	g.e.Prime()
	for q := range g.outer {
		g.outer[q].Start()
		g.inner[q].Start()
	}
	g.e.Start()
	tb.Cleanup(func() { g.stop(tb) })
	return g
}

// send offers n frames round-robin to the outer ports, retrying refused
// ones (veth's ring full) so that every frame enters the gate.
func (g *gate) send(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	buf := make([]byte, 4096)
	for i := 0; i < n; {
		// Keep a window in flight, as a TCP sender would: a burst beyond
		// the FILL rings is dropped by the kernel (rx_dropped), which is
		// not what these tests are about. Frames lost to a fault never
		// arrive, so the wait is bounded.
		if i%32 == 0 {
			// Checked per 32 frames: the accounting is not free, and a
			// sender slowed to one frame per NAPI poll would never let
			// faults that need two frames in a poll (veth race) happen.
			g.window(tb, deadline)
		}
		p := g.outer[g.sent%len(g.outer)]
		if p.Deliver(g.traffic.Frame(buf, uint64(g.sent))) {
			g.sent++
			i++
			continue
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sent only %d of %d frames", i, n)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// window waits, until deadline, for room in a window of half the ring
// size in flight: bursts, as NAPI sees them (faults such as the veth race
// need two frames in one poll and two free buffers), without running FILL
// dry. A frame is in flight until the sink has it, the kernel model
// dropped it (counted), or a fault the model injected took it.
func (g *gate) window(tb testing.TB, deadline time.Time) {
	for uint64(g.sent) > g.accounted()+uint64(g.ring)/2 {
		if time.Now().After(deadline) {
			tb.Fatalf("window never opened: %d sent, %d accounted for", g.sent, g.accounted())
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// kernelDrops sums what the model's kernel dropped on the outer ports
// (FILL empty, RX ring full, the XDP program's drops): counted losses, not
// faults of the gate.
func (g *gate) kernelDrops() uint64 {
	var n uint64
	for _, p := range g.outer {
		if st, err := p.Stats(); err == nil {
			n += st.RxDropped + st.RxRingFull
		}
		n += p.Counters().XDPDrops
	}
	return n
}

// accounted is every frame whose fate is known: delivered, dropped by the
// kernel model, hit by an injected fault, or dropped by the engine.
func (g *gate) accounted() uint64 {
	n := g.sink.Stats().Received + g.kernelDrops()
	for _, p := range g.outer {
		n += uint64(len(p.Injected()))
	}
	for _, w := range g.e.Workers() {
		for r := range w.Stats[engine.Outer].Drops {
			n += w.Stats[engine.Outer].Drops[r].Load()
		}
	}
	return n
}

// settleAll waits (deadline 30 s) until every one of want frames is
// delivered or dropped by the kernel model, counted. For fault-free runs:
// no timing guess, the condition is the accounting itself.
func (g *gate) settleAll(tb testing.TB, want uint64) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for g.sink.Stats().Received+g.kernelDrops() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("after 30 s: sink %+v, kernel drops %d, of %d frames", g.sink.Stats(), g.kernelDrops(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle waits (deadline 60 s) until the fate of want frames is known
// (accounted): frames lost to faults never arrive, but their injection is
// counted. A condition, not a pause: a run slowed down by load only takes
// longer. A fault may count one frame twice (its injection and the
// violation that quarantined it), so a few frames may still be in flight
// when it returns; tests that count deliveries wait for them (delivered).
func (g *gate) settle(tb testing.TB, want uint64) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for g.accounted() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("after 60 s: %d of %d frames accounted for (sink %+v, kernel drops %d)", g.accounted(), want, g.sink.Stats(), g.kernelDrops())
		}
		time.Sleep(time.Millisecond)
	}
}

// delivered waits (deadline 30 s) until the sink has every one of want
// frames but lost, or the kernel model dropped them (counted), and reports
// whether that happened.
func (g *gate) delivered(want, lost uint64) bool {
	deadline := time.Now().Add(30 * time.Second)
	for g.sink.Stats().Unique+g.kernelDrops()+lost < want {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func (g *gate) stop(tb testing.TB) {
	if g.stopped {
		return
	}
	g.stopped = true
	g.checks.Close() // releases a frozen worker
	if err := g.e.Stop(200 * time.Millisecond); err != nil {
		tb.Errorf("engine stop: %v", err)
	}
}

// fakePort is an engine.Port whose kernel side is the test: rings in plain
// memory, consumer indices moved by consume.
type fakePort struct {
	name           string
	queue          int
	fill           *xsk.FillRing
	comp           *xsk.CompRing
	rx             *xsk.RxRing
	tx             *xsk.TxRing
	fillMem, txMem []byte
	compMem, rxMem []byte
	stats          xsk.Statistics
	size           uint32
}

func newFakePort(tb testing.TB, name string, size uint32) *fakePort {
	p := &fakePort{name: name, size: size,
		fillMem: xsk.RingMemory(size, 8), compMem: xsk.RingMemory(size, 8),
		rxMem: xsk.RingMemory(size, 16), txMem: xsk.RingMemory(size, 16)}
	var err error
	if p.fill, err = xsk.NewFillRing(p.fillMem, xsk.KernelOffsets, size); err != nil {
		tb.Fatal(err)
	}
	if p.comp, err = xsk.NewCompRing(p.compMem, xsk.KernelOffsets, size); err != nil {
		tb.Fatal(err)
	}
	if p.rx, err = xsk.NewRxRing(p.rxMem, xsk.KernelOffsets, size); err != nil {
		tb.Fatal(err)
	}
	if p.tx, err = xsk.NewTxRing(p.txMem, xsk.KernelOffsets, size); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (p *fakePort) Rings() (*xsk.FillRing, *xsk.CompRing, *xsk.RxRing, *xsk.TxRing) {
	return p.fill, p.comp, p.rx, p.tx
}
func (p *fakePort) Kick() unix.Errno               { return 0 }
func (p *fakePort) Stats() (xsk.Statistics, error) { return p.stats, nil }
func (p *fakePort) Ifname() string                 { return p.name }
func (p *fakePort) Queue() int                     { return p.queue }
func (p *fakePort) TxBatch() uint32                { return 32 }

// consume plays the kernel taking everything posted on FILL and TX.
func (p *fakePort) consume() {
	for _, m := range [][]byte{p.fillMem, p.txMem} {
		prod := atomic.LoadUint32((*uint32)(ptr(m, xsk.KernelOffsets.Producer)))
		storeU32(m, xsk.KernelOffsets.Consumer, prod)
	}
}
