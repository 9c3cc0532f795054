package engine_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// modelGate is the engine on kernel-model ports: the same engine code as on
// real sockets, with the kernel side in software.
type modelGate struct {
	umem         *xsk.Umem
	outer, inner []*kmodel.Port
	sink         *kmodel.Sink
	e            *engine.Engine
}

func newModelGate(t testing.TB, queues int, frames uint32, cfg engine.Config, mods ...func(*kmodel.Config)) *modelGate {
	t.Helper()
	g := buildModelGate(t, queues, frames, cfg, mods...)
	g.e.Prime()
	for q := range g.outer {
		g.outer[q].Start()
		g.inner[q].Start()
	}
	g.e.Start()
	return g
}

// buildModelGate is newModelGate without priming or starting anything:
// the ports' softirqs and the workers run only when the test says.
func buildModelGate(t testing.TB, queues int, frames uint32, cfg engine.Config, mods ...func(*kmodel.Config)) *modelGate {
	t.Helper()
	const fs = 4096
	area := make([]byte, int(frames)*fs)
	var probe kmodel.Config
	for _, m := range mods {
		m(&probe)
	}
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: fs, NumFrames: frames, TxMetadata: probe.TxMetadataLen > 0})
	if err != nil {
		t.Fatal(err)
	}
	g := &modelGate{umem: u, sink: kmodel.NewSink(kmodel.Traffic{Seed: 1})}
	var pairs []engine.Pair
	for q := 0; q < queues; q++ {
		mk := func(name string) *kmodel.Port {
			kc := kmodel.Config{Umem: area, FrameSize: fs, Ifname: name, Queue: q,
				FillSize: 1024, CompSize: 1024, RxSize: 1024, TxSize: 1024}
			for _, m := range mods {
				m(&kc)
			}
			p, err := kmodel.NewPort(kc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p
		}
		o, i := mk("outer"), mk("inner")
		i.SetPeer(g.sink)
		g.outer, g.inner = append(g.outer, o), append(g.inner, i)
		pairs = append(pairs, engine.Pair{Outer: o, Inner: i})
	}
	if g.e, err = engine.New(u, pairs, cfg); err != nil {
		t.Fatal(err)
	}
	return g
}

// send offers n sequenced frames round-robin to the outer ports, waiting
// when their input queues (veth's 256-entry ring) are full.
func (g *modelGate) send(t testing.TB, src *source, n int) {
	deadline := time.Now().Add(30 * time.Second)
	for sent := 0; sent < n; {
		p := g.outer[sent%len(g.outer)]
		if p.Deliver(src.t.Frame(src.buf, src.seq)) {
			src.seq++
			sent++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("sent only %d of %d frames", sent, n)
		}
		runtime.Gosched() // the model's softirq goroutine needs the CPU
	}
}

// source is a kmodel.Traffic stream that can retry a refused frame.
type source struct {
	t   kmodel.Traffic
	seq uint64
	buf []byte
}

func newSource(t kmodel.Traffic) *source { return &source{t: t, buf: make([]byte, 2048)} }

func TestEngineOnModel(t *testing.T) {
	for _, queues := range []int{1, 2} {
		t.Run(fmt.Sprintf("queues=%d", queues), func(t *testing.T) {
			g := newModelGate(t, queues, 4096, engine.Config{})
			src := newSource(kmodel.Traffic{Seed: 1})
			const n = 50000
			g.send(t, src, n)
			waitUnique(t, g, n)
			if err := g.e.Stop(time.Second); err != nil {
				t.Fatal(err)
			}
			// Every frame exactly once, or counted as dropped by the
			// kernel side; the engine itself drops nothing.
			st, kd := g.sink.Stats(), g.kernelDrops()
			if st.Unique+kd != n || st.Duplicates != 0 || st.Malformed != 0 {
				t.Fatalf("sink %+v + kernel drops %d, want %d, no duplicates", st, kd, n)
			}
			for _, w := range g.e.Workers() {
				for s := range w.Stats {
					for r := range w.Stats[s].Drops {
						if d := w.Stats[s].Drops[r].Load(); d != 0 {
							t.Errorf("engine dropped %d (%s)", d, engine.DropReason(r))
						}
					}
				}
			}
			t.Logf("%d delivered, %d dropped by the model's kernel side under overload", st.Unique, kd)
			if a := g.e.Accounting(); !a.Balanced() || a.Tx != 0 {
				t.Fatalf("accounting %+v", a)
			}
		})
	}
}

// TestEngineOnModelZeroCopy: a zero-copy driver that runs out of buffers
// sets NEED_WAKEUP on FILL and takes no frame until woken. With fewer
// frames posted than its ring holds it runs dry after every burst: the
// engine must wake it after refilling (recvfrom), or RX stalls for good
// (the model has no poll(2) to fall back on).
func TestEngineOnModelZeroCopy(t *testing.T) {
	g := newModelGate(t, 1, 4096, engine.Config{FillTarget: 48},
		func(c *kmodel.Config) { c.ZeroCopy, c.DriverRing = true, 64 })
	src := newSource(kmodel.Traffic{Seed: 1})
	const n = 20000
	g.send(t, src, n)
	waitUnique(t, g, n)
	if err := g.e.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if st, kd := g.sink.Stats(), g.kernelDrops(); st.Unique+kd != n || st.Duplicates != 0 || st.Malformed != 0 {
		t.Fatalf("sink %+v + kernel drops %d, want %d", st, kd, n)
	}
	w := g.e.Workers()[0]
	c := g.outer[0].Counters()
	wakes := w.Stats[engine.Outer].FillWakeups.Load()
	if c.Starved == 0 || wakes == 0 || c.Wakeups != wakes {
		t.Fatalf("driver starved %d times, engine woke it %d times, model saw %d wakeups", c.Starved, wakes, c.Wakeups)
	}
	t.Logf("driver ran dry %d times, %d wakeups, %d buffers recycled", c.Starved, wakes, c.Recycled)
	if a := g.e.Accounting(); !a.Balanced() || a.Tx != 0 {
		t.Fatalf("accounting %+v", a)
	}
}

// TestEngineAllocs pins zero allocations per packet in the worker loop:
// the runtime's allocation count must not grow with the packets forwarded.
func TestEngineAllocs(t *testing.T) {
	g := newModelGate(t, 1, 4096, engine.Config{})
	src := newSource(kmodel.Traffic{Seed: 1})
	g.send(t, src, 5000) // warm up: the model's own buffers, the sink's map
	waitUnique(t, g, 5000)
	allocs := testing.AllocsPerRun(5, func() {
		before := g.sink.Stats().Unique + g.kernelDrops()
		g.send(t, src, 20000)
		waitUnique(t, g, before+20000)
	})
	// The sink and the test loop allocate a little per run; the engine
	// must add nothing per packet: far below one allocation per 1000.
	if allocs > 20 {
		t.Fatalf("%.0f allocations per 20000 packets", allocs)
	}
	g.e.Stop(time.Second)
}

// kernelDrops is what the model's kernel side dropped and counted
// (rx_dropped: FILL empty or frame too big; rx_ring_full).
func (g *modelGate) kernelDrops() (n uint64) {
	for _, p := range g.outer {
		st, _ := p.Stats()
		n += st.RxDropped + st.RxRingFull
	}
	return n
}

// waitUnique waits until n frames are accounted for: delivered, or dropped
// by the kernel side under overload (as a NIC drops when FILL runs dry).
func waitUnique(t testing.TB, g *modelGate, n uint64) {
	deadline := time.Now().Add(20 * time.Second)
	for g.sink.Stats().Unique+g.kernelDrops() < n {
		if time.Now().After(deadline) {
			for q := range g.outer {
				so, _ := g.outer[q].Stats()
				si, _ := g.inner[q].Stats()
				t.Logf("q%d outer %+v %+v inner %+v %+v", q, so, g.outer[q].Counters(), si, g.inner[q].Counters())
			}
			for _, w := range g.e.Workers() {
				for s := range w.Stats {
					st := &w.Stats[s]
					t.Logf("worker %d side %d rx %d tx %d drops %d %d %d %d", w.ID(), s, st.RxPackets.Load(), st.TxPackets.Load(),
						st.Drops[0].Load(), st.Drops[1].Load(), st.Drops[2].Load(), st.Drops[3].Load())
				}
			}
			t.Fatalf("only %d of %d frames arrived (sink %+v)", g.sink.Stats().Unique, n, g.sink.Stats())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkEngineModel measures the engine's forwarding through the model:
// packets/s and allocations per packet, with no kernel noise.
func BenchmarkEngineModel(b *testing.B) {
	g := newModelGate(b, 1, 4096, engine.Config{})
	src := newSource(kmodel.Traffic{Seed: 1})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	g.send(b, src, b.N)
	waitUnique(b, g, uint64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pkt/s")
	b.StopTimer()
	g.e.Stop(time.Second)
}
