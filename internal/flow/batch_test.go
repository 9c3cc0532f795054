package flow

import (
	"net/netip"
	"testing"
)

// TestBatchMatchesSerial: TrackBatch, LookupBatch and TrackPrepared give exactly what the
// per-segment calls give, including several segments of one flow in a
// chunk, malformed segments and chunk boundaries.
func TestBatchMatchesSerial(t *testing.T) {
	serialT, batchT := newTable(t, Config{}), newTable(t, Config{})
	var segs []Segment
	for i := 0; i < 10; i++ {
		x := newConn(t, serialT)
		x.c.addr = addrN(i)
		for _, st := range []struct {
			c     bool
			flags uint8
			n     uint32
		}{{fromC, FlagSYN, 0}, {fromS, FlagSYN | FlagACK, 0}, {fromC, FlagACK, 0},
			{fromC, FlagACK | FlagPSH, 100}, {fromC, FlagFIN, 0}, {fromS, FlagACK, 0}} {
			s := x.seg(st.c, st.flags, st.n)
			segs = append(segs, *s)
			x.send(st.c, st.flags, st.n) // advance the model on the serial table
		}
	}
	serialT = newTable(t, Config{})
	want := make([]Verdict, len(segs))
	for i := range segs {
		want[i] = serialT.Track(&segs[i], 1000)
	}
	got := make([]Verdict, len(segs))
	batchT.TrackBatch(segs, 1000, got)
	for i := range segs {
		if got[i] != want[i] {
			t.Fatalf("segment %d: batch %+v, serial %+v", i, got[i], want[i])
		}
	}
	res := make([]LookupResult, len(segs))
	batchT.LookupBatch(segs, 1000, res)
	for i := range segs {
		s, ok := serialT.Lookup(&segs[i], 1000)
		if res[i] != (LookupResult{s, ok}) {
			t.Fatalf("lookup %d: %+v vs %v %v", i, res[i], s, ok)
		}
	}
	// Prepare + TrackPrepared, in chunks that split connections, with a
	// segment Prepare skips (no Src) tracked as Track would.
	segs[7].Src = netip.Addr{}
	serialT, prepT := newTable(t, Config{}), newTable(t, Config{})
	prep := make([]Prepared, len(segs))
	for lo := 0; lo < len(segs); lo += 13 {
		hi := min(lo+13, len(segs))
		prepT.Prepare(segs[lo:hi], prep[lo:hi])
		for i := lo; i < hi; i++ {
			if got, want := prepT.TrackPrepared(&segs[i], &prep[i], 1000), serialT.Track(&segs[i], 1000); got != want {
				t.Fatalf("segment %d: prepared %+v, serial %+v", i, got, want)
			}
		}
	}
}
