package kmodel

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/xsk"
)

// TestForwardConcurrent runs the rig with both softirq goroutines live:
// every sequenced frame must reach the sink exactly once, every chunk must
// come home, and the checkers must see nothing wrong. Batch sizes, frame
// lengths and the in-flight window are drawn from the seed.
func TestForwardConcurrent(t *testing.T) {
	frames := 100_000
	if testing.Short() {
		frames = 10_000
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			before := runtime.NumGoroutine()
			r := newRig(t, rigConfig{
				seed: seed, headroom: uint32(seed%2) * 128, poison: seed%2 == 1,
				traffic: Traffic{Seed: seed, MinLen: 60, MaxLen: 1500},
			})
			window := uint64(1 + r.rng.IntN(128))
			for range 8 { // stock FILL before the first frame
				r.refill()
			}
			r.a.Start()
			r.b.Start()
			r.a.Start() // idempotent
			deadline := time.Now().Add(2 * time.Minute)
			total := uint64(frames)
			lost := func() uint64 {
				s := mustStats(t, r.a)
				return s.RxDropped + s.RxRingFull + r.a.Counters().BacklogDrops + uint64(r.dropped)
			}
			for r.sink.Stats().Received+lost() < total {
				if time.Now().After(deadline) {
					t.Fatalf("stuck: sent %d, sink %+v, A %+v, B %+v", r.src.Sent(), r.sink.Stats(), r.a.Counters(), r.b.Counters())
				}
				if r.v != nil {
					t.Fatalf("violation: %v", r.v)
				}
				inflight := r.src.Sent() - r.sink.Stats().Received
				if r.src.Sent() < total && inflight < window {
					r.src.Send(r.a, int(min(window-inflight, total-r.src.Sent(), uint64(r.batch(64)))))
				}
				r.refill()
				n := r.drainRx()
				r.pushTx()
				n += r.drainComp()
				if n == 0 {
					runtime.Gosched()
				}
			}
			for r.drainComp() > 0 {
			}
			r.a.Close()
			r.b.Close()

			if r.v != nil {
				t.Fatalf("violation: %v", r.v)
			}
			st := r.sink.Stats()
			if st != (SinkStats{Received: total, Unique: total}) {
				t.Fatalf("sink %+v, first error %v", st, r.sink.Err())
			}
			for _, p := range []*Port{r.a, r.b} {
				s := mustStats(t, p)
				s.TxRingEmptyDescs = 0 // idle kicks
				if s != (xsk.Statistics{}) {
					t.Errorf("%s stats %+v", p.Ifname(), s)
				}
			}
			ca, cb := r.a.Counters(), r.b.Counters()
			if ca.Backlogged != total || ca.RxFrames != total || ca.RxDescs != total || cb.TxFrames != total ||
				ca.BacklogDrops+cb.TxPeerDrops+ca.FillInvalid != 0 {
				t.Errorf("counters A %+v B %+v", ca, cb)
			}
			// Every chunk is the user's or on A's FILL, and FILL's
			// outstanding entries are exactly the ones the checker expects.
			onFill := len(r.ca.fifo) - r.ca.fhead
			if len(r.free)+onFill != len(r.st.own) || len(r.pending) != 0 {
				t.Errorf("chunks: %d free + %d on FILL + %d pending != %d", len(r.free), onFill, len(r.pending), len(r.st.own))
			}
			if out := r.fillA.Outstanding(); int(out) != onFill {
				t.Errorf("FILL outstanding %d, checker %d", out, onFill)
			}
			waitGoroutines(t, before)
		})
	}
}

func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	for i := 0; runtime.NumGoroutine() > want; i++ {
		if i == 200 {
			t.Fatalf("goroutines: %d, want %d", runtime.NumGoroutine(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStarveAndOverflowConcurrent: with the softirq running, a FILL left
// empty makes rx_fill_ring_empty_descs and rx_dropped grow, and an RX ring
// nobody drains makes rx_ring_full grow.
func TestStarveAndOverflowConcurrent(t *testing.T) {
	p, _ := newTestPort(t, func(c *Config) { c.RxSize = 16 })
	p.Start()
	src := NewSource(Traffic{Seed: 5})
	deliverAll := func(n int) {
		for range n {
			for !p.Deliver(src.Next()) {
				runtime.Gosched()
			}
		}
		for p.Counters().RxFrames < p.Counters().Backlogged {
			runtime.Gosched()
		}
	}
	deliverAll(100)
	// RxFrames counts a frame when the softirq takes it, its drop a moment
	// later: wait for the counters to settle, then check them.
	s := statsEventually(t, p, func(s xsk.Statistics) bool { return s.RxDropped >= 100 })
	if s.RxFillRingEmptyDescs != 100 || s.RxDropped != 100 || s.RxRingFull != 0 {
		t.Fatalf("starved: %+v", s)
	}
	var addrs []uint64
	for i := range 40 {
		addrs = append(addrs, uint64(i)*testFS)
	}
	putFill(t, p, addrs...)
	deliverAll(50)
	s = statsEventually(t, p, func(s xsk.Statistics) bool { return s.RxRingFull >= 50-16 })
	if s.RxRingFull != 50-16 || s.RxDropped != 100 {
		t.Fatalf("overflow: %+v", s)
	}
	if d := getRx(t, p); len(d) != 16 {
		t.Fatalf("RX holds %d", len(d))
	}
}

// statsEventually returns p's statistics once done says they are complete,
// or after 5 s (the caller's checks then fail with what was counted).
func statsEventually(t *testing.T, p *Port, done func(xsk.Statistics) bool) xsk.Statistics {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := mustStats(t, p)
		if done(s) || time.Now().After(deadline) {
			return s
		}
		runtime.Gosched()
	}
}
