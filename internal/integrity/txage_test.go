package integrity

import (
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// sweeps runs n TX age sweeps of the unit's checker, each one interval
// after the last: the clock is the test's, not the wall's.
func (x *unit) sweeps(n int) {
	k := x.k.(*Checker)
	for range n {
		k.now = k.lastSweep + x.checks.sweepEvery
		k.sweepTx()
	}
}

// TestTxAge: a TX entry is reported once it has been on TX through two
// sweep intervals while its kernel made progress; not while the kernel
// makes none (a link down: nothing consumed, nothing completed), and not
// once it completed.
func TestTxAge(t *testing.T) {
	const O, I = engine.Outer, engine.Inner
	newTx := func(t *testing.T) (*unit, xsk.Desc) {
		x := newUnit(t, DefaultConfig(), 1)
		x.fill(O, 1)
		d := x.frame(O, 1, 60)
		x.recv(O, d)
		return x, d
	}
	overdue := func(x *unit) uint64 { return x.checks.Counts()[TxOverdue] }

	t.Run("completion lost", func(t *testing.T) {
		x, d := newTx(t)
		x.tx(I, d) // the kernel takes it off TX (consume) and never completes it
		x.k.Idle() // reads the post back, as the worker's next call does
		x.sweeps(2)
		if n := overdue(x); n != 0 {
			t.Fatalf("reported after one interval: %d", n)
		}
		x.sweeps(5)
		vs := x.checks.Violations()
		if len(vs) != 1 || vs[0].Class != TxOverdue || vs[0].Addr != base(1) || vs[0].Iface != "inner" {
			t.Fatalf("violations %v, want one tx_overdue of chunk 1 on inner", vs)
		}
		// A late completion is accepted: late, not lost.
		if got := x.comp(I, d.Addr); got[0] != K {
			t.Fatalf("late completion: %v, %v", got, x.checks.Violations())
		}
		if got := x.fill(O, 1); got[0] != K || len(x.checks.Violations()) != 1 {
			t.Fatalf("refill after the late completion: %v, %v", got, x.checks.Violations())
		}
	})
	t.Run("completed in time", func(t *testing.T) {
		x, d := newTx(t)
		x.tx(I, d)
		x.sweeps(2)
		x.comp(I, d.Addr)
		x.sweeps(5)
		if vs := x.checks.Violations(); len(vs) != 0 {
			t.Fatalf("violations %v", vs)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		x, d := newTx(t)
		// Posted, never consumed: the device is down or stalled.
		out := x.disp(1)
		x.k.PostTx(I, []xsk.Desc{d}, out)
		if _, err := x.ports[I].tx.Put([]xsk.Desc{d}); err != nil {
			t.Fatal(err)
		}
		x.fill(O, 2) // read back the TX post
		x.sweeps(10)
		if n := overdue(x); n != 0 {
			t.Fatalf("reported while the kernel made no progress: %v", x.checks.Violations())
		}
		// The device comes back and sends it, but never completes it.
		x.ports[I].consume()
		x.sweeps(3)
		if n := overdue(x); n != 1 {
			t.Fatalf("%d reports, want 1: %v", n, x.checks.Violations())
		}
	})
}

// TestTxOverdue: a kernel that transmits a frame and never completes it
// (kmodel's LostCompletion) is caught by the TX age limit, exactly that
// frame, while every other frame of the run completes without a report.
func TestTxOverdue(t *testing.T) {
	const frames = 5000
	cfg := DefaultConfig()
	cfg.TxAgeLimit = 100 * time.Millisecond
	g := newGate(t, gateOpts{cfg: &cfg, innerFaults: kmodel.Faults{Seed: 11, Limit: 1, LostCompletion: 0.005},
		traffic: kmodel.Traffic{Seed: 2, MinLen: 60, MaxLen: 1500}})
	g.send(t, frames)
	g.settleAll(t, frames)
	waitUntil(t, "the lost completion reported", func() bool { return g.checks.Counts()[TxOverdue] > 0 })
	g.stop(t)
	assertOneOverdue(t, g)
	if a := g.e.Accounting(); !a.Balanced() || a.Tx != 1 {
		t.Fatalf("accounting %+v, want the leaked frame counted on TX", a)
	}
}

// assertOneOverdue checks that the inner port lost exactly one completion
// and that the checks reported exactly that chunk, once, as tx_overdue.
func assertOneOverdue(t *testing.T, g *gate) {
	t.Helper()
	in := g.inner[0].Injected()
	if len(in) != 1 || in[0].Kind != kmodel.LostCompletion {
		t.Fatalf("injected %+v, want one lost completion", in)
	}
	vs := g.checks.Violations()
	if len(vs) != 1 || vs[0].Class != TxOverdue || vs[0].Addr != in[0].Addr&^(4096-1) {
		t.Fatalf("violations %v, want one tx_overdue of chunk %#x", vs, in[0].Addr&^(4096-1))
	}
}
