package engine_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
)

// copier forwards every frame and, for every fourth one received on outer,
// sends a copy of it back out of outer in a spare frame (engine.Extra).
type copier struct {
	t      testing.TB
	extras [8]engine.Extra
	asked  atomic.Uint64
	n      uint64 // frames seen (worker 0 only)
	greedy int    // > 0: ask this many spare frames per batch instead
}

func (c *copier) UseExtra(worker int, x engine.Extra) { c.extras[worker] = x }

func (c *copier) Inspect(worker int, from engine.Side, pkts []engine.Packet) {
	x := c.extras[worker]
	if x == nil {
		c.t.Error("Inspect before UseExtra")
		return
	}
	if from != engine.Outer {
		return
	}
	for range c.greedy {
		c.asked.Add(1)
		if buf := x.Frame(engine.Outer); buf != nil {
			x.Send(copy(buf[:len(pkts[0].Data)], pkts[0].Data))
		}
	}
	if c.greedy > 0 {
		return
	}
	for k := range pkts {
		if c.n++; c.n%4 != 0 {
			continue
		}
		c.asked.Add(1)
		buf := x.Frame(engine.Outer)
		if buf == nil {
			continue
		}
		if len(buf) != 0 || cap(buf) < len(pkts[k].Data) {
			c.t.Errorf("spare frame len %d cap %d for a %d-byte copy", len(buf), cap(buf), len(pkts[k].Data))
			return
		}
		if x.Send(cap(buf) + 1) {
			c.t.Error("Send beyond the frame accepted")
		}
		buf = append(buf, pkts[k].Data...) // within cap: writes the UMEM, no allocation
		if !x.Send(len(buf)) {
			c.t.Error("Send refused")
		}
		if x.Send(len(buf)) {
			c.t.Error("second Send of one frame accepted")
		}
	}
}

// TestExtraFrames: the extra frames leave by the side asked for, each once,
// while every forwarded frame still arrives; the frame accounting balances
// and the engine drops nothing.
func TestExtraFrames(t *testing.T) {
	c := &copier{t: t}
	g := newModelGate(t, 1, 4096, engine.Config{Inspector: c})
	back := kmodel.NewSink(kmodel.Traffic{Seed: 1})
	g.outer[0].SetPeer(back) // before traffic flows, as SetPeer asks
	src := newSource(kmodel.Traffic{Seed: 1})
	const n = 20000
	g.send(t, src, n)
	waitUnique(t, g, n)
	w := g.e.Workers()[0]
	deadline := time.Now().Add(20 * time.Second)
	for back.Stats().Unique < w.Stats[engine.Outer].ExtraSent.Load() || w.Accounting().Tx != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("extra frames: %d sent, %+v arrived; accounting %+v", w.Stats[engine.Outer].ExtraSent.Load(), back.Stats(), w.Accounting())
		}
		time.Sleep(time.Millisecond)
	}
	if err := g.e.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	st, kd := g.sink.Stats(), g.kernelDrops()
	if st.Unique+kd != n || st.Duplicates != 0 || st.Malformed != 0 {
		t.Fatalf("forwarded: sink %+v + kernel drops %d, want %d", st, kd, n)
	}
	sent, refused := w.Stats[engine.Outer].ExtraSent.Load(), w.Stats[engine.Outer].ExtraRefused.Load()
	bs := back.Stats()
	t.Logf("asked %d spare frames: %d sent, %d refused; outer peer got %+v", c.asked.Load(), sent, refused, bs)
	if sent == 0 || sent+refused != c.asked.Load() || bs.Unique != sent || bs.Duplicates != 0 || bs.Malformed != 0 {
		t.Fatalf("extra frames: asked %d, sent %d, refused %d, arrived %+v", c.asked.Load(), sent, refused, bs)
	}
	for s := range w.Stats {
		for r := range w.Stats[s].Drops {
			if d := w.Stats[s].Drops[r].Load(); d != 0 {
				t.Errorf("engine dropped %d (%s)", d, engine.DropReason(r))
			}
		}
	}
	if a := g.e.Accounting(); !a.Balanced() || a.Tx != 0 {
		t.Fatalf("accounting %+v", a)
	}
}

// TestExtraAllocs: sending extra frames allocates nothing per packet.
func TestExtraAllocs(t *testing.T) {
	c := &copier{t: t}
	g := newModelGate(t, 1, 4096, engine.Config{Inspector: c})
	g.outer[0].SetPeer(nil)
	src := newSource(kmodel.Traffic{Seed: 1})
	g.send(t, src, 5000)
	waitUnique(t, g, 5000)
	allocs := testing.AllocsPerRun(5, func() {
		before := g.sink.Stats().Unique + g.kernelDrops()
		g.send(t, src, 20000)
		waitUnique(t, g, before+20000)
	})
	if allocs > 20 { // as TestEngineAllocs: the sink and test loop only
		t.Fatalf("%.0f allocations per 20000 packets", allocs)
	}
	if g.e.Workers()[0].Stats[engine.Outer].ExtraSent.Load() == 0 {
		t.Fatal("no extra frame sent")
	}
	g.e.Stop(time.Second)
}

// TestExtraRefused: an Inspector asking for more spare frames than a
// worker can give is refused (counted), the TX queue does not grow past
// its room, and every frame is still accounted for.
func TestExtraRefused(t *testing.T) {
	c := &copier{t: t, greedy: 300}
	g := newModelGate(t, 1, 4096, engine.Config{Inspector: c})
	g.outer[0].SetPeer(nil)
	src := newSource(kmodel.Traffic{Seed: 1})
	g.send(t, src, 2000)
	waitUnique(t, g, 2000)
	if err := g.e.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	w := g.e.Workers()[0]
	sent, refused := w.Stats[engine.Outer].ExtraSent.Load(), w.Stats[engine.Outer].ExtraRefused.Load()
	t.Logf("asked %d: sent %d, refused %d", c.asked.Load(), sent, refused)
	if refused == 0 || sent == 0 || sent+refused != c.asked.Load() {
		t.Fatalf("asked %d: sent %d, refused %d", c.asked.Load(), sent, refused)
	}
	if a := g.e.Accounting(); !a.Balanced() || a.Tx != 0 {
		t.Fatalf("accounting %+v", a)
	}
}
