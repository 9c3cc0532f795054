package engine_test

import (
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// TestFillAbsorbsBurst: a burst that arrives while the worker is away is
// received into what its FILL ring holds, 7/16 of the worker's frames by
// default. Here the worker never runs after Prime: 1500 frames in a row
// reach a 4096-frame worker whose rings have 2048 entries. With a quarter
// of the frames on FILL (the previous default), 476 of them were dropped
// for want of FILL while 2048 frames waited on the free list.
func TestFillAbsorbsBurst(t *testing.T) {
	const frames, fs, burst = 4096, 4096, 1500
	area := make([]byte, frames*fs)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: fs, NumFrames: frames})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string) *kmodel.Port {
		p, err := kmodel.NewPort(kmodel.Config{Umem: area, FrameSize: fs, Ifname: name,
			FillSize: 2048, CompSize: 2048, RxSize: 2048, TxSize: 2048})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	outer, inner := mk("outer"), mk("inner")
	e, err := engine.New(u, []engine.Pair{{Outer: outer, Inner: inner}}, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.Prime()
	src := newSource(kmodel.Traffic{Seed: 1})
	for sent := 0; sent < burst; {
		for ; sent < burst && outer.Deliver(src.t.Frame(src.buf, src.seq)); sent++ {
			src.seq++
		}
		for outer.Poll() > 0 {
		}
	}
	st, _ := outer.Stats()
	if c := outer.Counters(); c.RxFrames != burst || st.RxDropped != 0 {
		t.Fatalf("%d of %d frames polled, %d dropped for want of FILL (stats %+v): FILL held too few of the worker's frames",
			c.RxFrames, burst, st.RxDropped, st)
	}
}
