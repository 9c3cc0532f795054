package engine_test

import (
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
)

// TestFillAbsorbsBurst: a burst that arrives while the worker is away is
// received into what its FILL ring holds, 7/16 of the worker's frames by
// default. Here the worker never runs after Prime: 1500 frames in a row
// reach a 4096-frame worker whose rings have 2048 entries. With a quarter
// of the frames on FILL (the previous default), 476 of them were dropped
// for want of FILL while 2048 frames waited on the free list.
func TestFillAbsorbsBurst(t *testing.T) {
	const frames, burst = 4096, 1500
	g := buildModelGate(t, 1, frames, engine.Config{}, func(c *kmodel.Config) {
		c.FillSize, c.CompSize, c.RxSize, c.TxSize = 2048, 2048, 2048, 2048
	})
	g.e.Prime()
	outer := g.outer[0]
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
