package flow

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestLookupDuringChurn: lock-free lookups of flows that never change must
// always find them, in their state, while writers insert and evict other
// flows in the same shard, which moves index slots (backward shift) and
// reuses entries under the readers' feet.
func TestLookupDuringChurn(t *testing.T) {
	const stable, cap = 200, 400
	tb := newTable(t, Config{Capacity: cap})
	segs := make([]Segment, stable)
	for i := range segs {
		s := *synFrom(i)
		s.Flags = FlagACK
		if v := tb.Insert(&s, Open{State: StateEstablished, ClientISN: 1, ClientWScale: -1,
			ClientWindow: 1000, ServerISN: 2, ServerWScale: -1, ServerWindow: 1000}, 1000); !v.New {
			t.Fatalf("flow %d: %+v", i, v)
		}
		segs[i] = s
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	fail := func(msg string) {
		select {
		case errs <- msg:
		default:
		}
		stop.Store(true)
	}
	for w := range 2 { // churn: SYNs of new tuples evict unassured flows
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && i < 30000; i++ {
				tb.Track(synFrom(stable+1+w*1_000_000+i), 1000)
			}
			stop.Store(true)
		}()
	}
	for range 2 { // readers
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]LookupResult, stable)
			for !stop.Load() {
				for i := range segs {
					if st, ok := tb.Lookup(&segs[i], 1000); !ok || st != StateEstablished {
						fail("Lookup lost a stable flow")
						return
					}
				}
				tb.LookupBatch(segs, 1000, out)
				for i := range out {
					if out[i] != (LookupResult{StateEstablished, true}) {
						fail("LookupBatch lost a stable flow")
						return
					}
				}
				for i := 0; i < 64; i++ {
					if st, ok := tb.Lookup(synFrom(stable+1+i*7), 1000); ok && st != StateSynSent {
						fail("churned flow in state " + st.String())
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
	if st := tb.Stats(); st.Evictions == 0 {
		t.Fatalf("no churn: %+v", st)
	}
}
