package integrity

import (
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
)

// zeroCopyOpts is the gate on the kernel model's zero-copy driver with
// every reason to hand out buffers out of FILL order: its XDP program drops
// 5% of the frames and the RX ring (128) is much smaller than FILL and the
// sender's window, so bursts find it full; both recycle buffers ahead of
// new FILL entries.
func zeroCopyOpts(r kmodel.Record, f kmodel.Faults) gateOpts {
	return gateOpts{zeroCopy: true, driverRing: 256, xdpDrop: 0.05, rxRing: 128, record: r, poison: true,
		outerFaults: f, traffic: kmodel.Traffic{Seed: 9, MinLen: 60, MaxLen: 1500}}
}

// clean asserts what a fault-free run must show: no violation, nothing
// counted, every frame delivered once or dropped by the model's kernel
// (counted), the accounting balanced, nothing quarantined or lost.
func (g *gate) clean(t *testing.T, frames int) {
	t.Helper()
	if vs := g.checks.Violations(); len(vs) > 0 {
		t.Fatalf("%d violations, first: %v", len(vs), vs[0])
	}
	if c := g.checks.Counts(); c != ([NumClasses]uint64{}) {
		t.Fatalf("counts %v", c)
	}
	st, kd := g.sink.Stats(), g.kernelDrops()
	if st.Unique+kd != uint64(frames) || st.Duplicates != 0 || st.Malformed != 0 {
		t.Fatalf("sink %+v + %d kernel drops, want %d", st, kd, frames)
	}
	if a := g.e.Accounting(); !a.Balanced() || a.Quarantined != 0 {
		t.Fatalf("accounting %+v", a)
	}
	if s := g.checks.Stats(); s.Lost != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestZeroCopyChecks runs the engine and every check on a zero-copy
// driver: recycled buffers arrive out of FILL order, which is no fault
// there. Nothing may be reported or quarantined, the accounting balances,
// and RX never stalls: every frame arrives or is counted by the model's
// kernel (RX ring full, the XDP program's drops).
func TestZeroCopyChecks(t *testing.T) {
	frames := 30_000
	if testing.Short() {
		frames = 10_000
	}
	for _, r := range records {
		t.Run(carrierOf(r).String(), func(t *testing.T) {
			g := newGate(t, zeroCopyOpts(r, kmodel.Faults{Seed: 1}))
			if g.checks.Enabled(CheckOrder) {
				t.Fatal("order check on in zero-copy")
			}
			g.send(t, frames)
			g.settleAll(t, uint64(frames))
			g.stop(t)
			g.clean(t, frames)
			c := g.outer[0].Counters()
			kst, _ := g.outer[0].Stats()
			if c.Recycled == 0 || kst.RxRingFull == 0 {
				t.Fatalf("nothing recycled out of order (counters %+v, stats %+v): the test proves nothing", c, kst)
			}
			t.Logf("%d frames: %d recycled (%d XDP drops, %d RX ring full)", frames, c.Recycled, c.XDPDrops, kst.RxRingFull)
		})
	}
}

// TestZeroCopyWakeup: a driver that runs out of buffers sets NEED_WAKEUP
// on FILL and takes no frame until woken. FILL is kept short (64 entries
// against a driver ring of 128), so it runs dry in every burst; the
// engine must wake it each time (FillWakeups), or frames would wait in its
// input queue for good and the run would not settle.
func TestZeroCopyWakeup(t *testing.T) {
	const frames = 10_000
	o := zeroCopyOpts(kmodel.RecordMeta, kmodel.Faults{Seed: 3})
	o.driverRing, o.rxRing, o.ring = 128, 256, 256
	o.ecfg = engine.Config{FillTarget: 64}
	g := newGate(t, o)
	g.send(t, frames)
	g.settleAll(t, frames)
	g.stop(t)
	g.clean(t, frames)
	c := g.outer[0].Counters()
	woken := g.e.Workers()[0].Stats[engine.Outer].FillWakeups.Load()
	if c.Starved == 0 || woken == 0 || c.Wakeups < woken {
		t.Fatalf("driver starved %d times, engine woke it %d times, model saw %d wakeups: the test proves nothing",
			c.Starved, woken, c.Wakeups)
	}
	t.Logf("%d frames: driver ran dry %d times, woken %d times", frames, c.Starved, woken)
}

// trickle sends n frames one at a time, each once the previous one is
// delivered or counted as dropped: the last frames of a burst that found
// the RX ring full show up as metadata sequence gaps only when a later
// frame arrives, so a burst's end needs a calm tail before the
// reconciliation can balance.
func (g *gate) trickle(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	buf := make([]byte, 4096)
	for range n {
		before := g.accounted()
		for !g.outer[0].Deliver(g.traffic.Frame(buf, uint64(g.sent))) {
			time.Sleep(50 * time.Microsecond)
		}
		g.sent++
		for g.accounted() <= before {
			if time.Now().After(deadline) {
				t.Fatalf("frame %d neither delivered nor counted in 20 s", g.sent)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// TestZeroCopyLeak: leaks on a zero-copy driver are still caught.
//
//   - fill: the driver consumes a FILL entry and never returns it (the
//     model's Drop fault). That cannot be told from a buffer the driver
//     still holds by FILL order, so no chunk is declared lost; but the
//     frame's sequence number is missing and the kernel's counters do not
//     explain it: the reconciliation catches it (Stats.Unexplained).
//   - completion: the driver sends a frame and never completes it
//     (LostCompletion): the TX age limit reports it (tx_overdue).
func TestZeroCopyLeak(t *testing.T) {
	for _, r := range records[:2] {
		t.Run("fill/"+carrierOf(r).String(), func(t *testing.T) {
			const frames = 5000
			g := newGate(t, zeroCopyOpts(r, kmodel.Faults{Seed: 7, Limit: 1, Drop: 0.02}))
			g.send(t, frames)
			g.settle(t, frames)
			g.trickle(t, 32)
			in := g.outer[0].Injected()
			if len(in) != 1 || in[0].Kind != kmodel.Drop {
				t.Fatalf("injected %+v, want one drop", in)
			}
			waitUntil(t, "the leak reconciled as unexplained", func() bool { return g.checks.Stats().Unexplained > 0 })
			g.stop(t)
			if s := g.checks.Stats(); s.Unexplained != 1 || s.Lost != 0 {
				t.Fatalf("stats %+v, want 1 unexplained gap, nothing lost", s)
			}
			if vs := g.checks.Violations(); len(vs) > 0 {
				t.Fatalf("%d violations, first: %v", len(vs), vs[0])
			}
			if a := g.e.Accounting(); !a.Balanced() || a.Quarantined != 0 {
				t.Fatalf("accounting %+v", a)
			}
		})
	}
	t.Run("completion", func(t *testing.T) {
		const frames = 3000
		cfg := DefaultConfig()
		cfg.TxAgeLimit = 200 * time.Millisecond
		o := zeroCopyOpts(kmodel.RecordMeta, kmodel.Faults{Seed: 1})
		o.cfg, o.innerFaults = &cfg, kmodel.Faults{Seed: 5, Limit: 1, LostCompletion: 0.01}
		g := newGate(t, o)
		g.send(t, frames)
		g.settle(t, frames)
		waitUntil(t, "the lost completion reported", func() bool { return g.checks.Counts()[TxOverdue] > 0 })
		g.stop(t)
		assertOneOverdue(t, g)
	})
}
