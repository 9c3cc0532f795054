package engine_test

import (
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
)

// TestLinkDown: while inner's link is down, frames for it are dropped and
// counted as link_down, none is posted to its TX ring; once up, forwarding
// resumes. Frames stay accounted for throughout.
func TestLinkDown(t *testing.T) {
	g := newModelGate(t, 1, 4096, engine.Config{})
	src := newSource(kmodel.Traffic{Seed: 1}) // the sink checks frames of seed 1
	w := g.e.Workers()[0]
	in := &w.Stats[engine.Inner]

	g.send(t, src, 1000)
	waitUnique(t, g, 1000)

	g.e.SetLinkDown(engine.Inner, true)
	if !g.e.LinkDown(engine.Inner) {
		t.Fatal("LinkDown(inner) = false after SetLinkDown")
	}
	tx, kd := in.TxPackets.Load(), g.kernelDrops()
	const down = 2000
	g.send(t, src, down)
	// Every frame the kernel side delivered is dropped for link_down.
	deadline := time.Now().Add(20 * time.Second)
	for in.Drops[engine.DropLinkDown].Load()+g.kernelDrops()-kd < down {
		if time.Now().After(deadline) {
			t.Fatalf("link_down drops %d + kernel drops %d of %d frames", in.Drops[engine.DropLinkDown].Load(), g.kernelDrops()-kd, down)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if got := in.TxPackets.Load(); got != tx {
		t.Fatalf("%d frames posted to inner's TX while its link was down", got-tx)
	}
	if a := g.e.Accounting(); !a.Balanced() {
		t.Fatalf("accounting while down %+v", a)
	}

	g.e.SetLinkDown(engine.Inner, false)
	before := g.sink.Stats().Unique + g.kernelDrops()
	g.send(t, src, 1000)
	waitUnique(t, g, before+1000)
	if got := in.TxPackets.Load(); got == tx {
		t.Fatal("nothing posted to inner's TX after its link came back")
	}
	if err := g.e.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if a := g.e.Accounting(); !a.Balanced() || a.Tx != 0 {
		t.Fatalf("accounting at stop %+v", a)
	}
}

// TestStopSkipsDownLink: frames left on the TX ring of a link that went
// down are not waited for at shutdown (the kernel will not complete them
// while it is down, nor ever once it is gone): Stop returns at once and
// they stay counted as tx.
func TestStopSkipsDownLink(t *testing.T) {
	g := newModelGate(t, 1, 4096, engine.Config{})
	src := newSource(kmodel.Traffic{Seed: 1})
	g.inner[0].Close() // inner's kernel side stops: its TX is never consumed (ENETDOWN)
	g.send(t, src, 100)
	w := g.e.Workers()[0]
	deadline := time.Now().Add(10 * time.Second)
	for w.Accounting().Tx < 100-int(g.kernelDrops()) {
		if time.Now().After(deadline) {
			t.Fatalf("frames on TX %d, want the %d sent", w.Accounting().Tx, 100-g.kernelDrops())
		}
		time.Sleep(100 * time.Microsecond)
	}
	g.e.SetLinkDown(engine.Inner, true)
	start := time.Now()
	if err := g.e.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stop waited %v for a down link's TX", d)
	}
	if a := g.e.Accounting(); !a.Balanced() || a.Tx == 0 {
		t.Fatalf("accounting %+v: want balanced, the stranded frames counted as tx", a)
	}
}
