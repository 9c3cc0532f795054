package engine

import (
	"testing"

	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// spareLog is a Checker that keeps every entry and records the
// chunk bases the worker hands to Spare.
type spareLog struct{ spared []uint64 }

func (c *spareLog) PostFill(Side, []uint64, []Disposition) int   { return 0 }
func (c *spareLog) Received(Side, []xsk.Desc, []Disposition) int { return 0 }
func (c *spareLog) PostTx(Side, []xsk.Desc, []Disposition) int   { return 0 }
func (c *spareLog) Completed(Side, []uint64, []Disposition) int  { return 0 }
func (c *spareLog) Idle()                                        {}
func (c *spareLog) Spare(_ Side, addrs []uint64, _ []Disposition) int {
	c.spared = append(c.spared, addrs...)
	return 0
}

// TestSpareUnaligned: in unaligned mode chunks need not be a power of two
// apart, so the chunk base Send gives the Checker is the free list's, not
// the frame's address with the low bits masked off.
func TestSpareUnaligned(t *testing.T) {
	const fs, frames = 3000, 1024 // 3000 is no power of two: only unaligned mode takes it
	area := make([]byte, fs*frames)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: fs, NumFrames: frames, Unaligned: true})
	if err != nil {
		t.Fatal(err)
	}
	// The model's own chunking does not matter: its softirq never runs.
	mk := func(name string) *kmodel.Port {
		p, err := kmodel.NewPort(kmodel.Config{Umem: area[:len(area)/4096*4096], Ifname: name,
			FillSize: 256, CompSize: 256, RxSize: 256, TxSize: 256})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	log := &spareLog{}
	e, err := New(u, []Pair{{Outer: mk("outer"), Inner: mk("inner")}}, Config{Batch: 16, Logger: quiet(),
		NewChecker: func(int, Port, Port) Checker { return log }})
	if err != nil {
		t.Fatal(err)
	}
	w := e.workers[0]
	w.extra = spare{w: w}
	for range 3 { // chunks at 0, 3000 and 6000: the last two off any power-of-two grid
		base := w.free[len(w.free)-1]
		buf := w.extra.Frame(Outer)
		if buf == nil {
			t.Fatal("no spare frame")
		}
		if !w.extra.Send(copy(buf[:60], make([]byte, 60))) {
			t.Fatal("Send refused")
		}
		if got := log.spared[len(log.spared)-1]; got != base {
			t.Fatalf("Spare got chunk base %d for the frame at %d (frame size %d)", got, base, fs)
		}
	}
	if w.quar != 0 {
		t.Fatalf("%d frames quarantined", w.quar)
	}
}
