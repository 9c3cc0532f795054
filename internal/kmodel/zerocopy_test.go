package kmodel

import (
	"encoding/binary"
	"testing"

	"github.com/xskgate/xskgate/internal/xsk"
)

func zcPort(t testing.TB, mod func(*Config)) (*Port, []byte) {
	return newTestPort(t, func(c *Config) {
		c.ZeroCopy = true
		c.DriverRing = 4
		if mod != nil {
			mod(c)
		}
	})
}

func chunks(ds []xsk.Desc) []uint64 {
	var out []uint64
	for _, d := range ds {
		out = append(out, d.Addr/testFS)
	}
	return out
}

// TestZeroCopyRecycleOrder: a frame that finds RX full gives its buffer
// back to the driver, which uses it again after the buffers already in its
// ring: RX no longer follows FILL order, and no FILL entry is lost.
func TestZeroCopyRecycleOrder(t *testing.T) {
	p, _ := zcPort(t, func(c *Config) { c.RxSize = 2 })
	putFill(t, p, 10*testFS, 11*testFS, 12*testFS, 13*testFS, 14*testFS, 15*testFS)
	for range 3 {
		p.Deliver(make([]byte, 60))
	}
	// Ring [10 11 12 13]: 10, 11 received, 12 finds RX full; the refill
	// at the end of the poll puts 12 back first: [13 12 14 15].
	p.Poll()
	got := chunks(getRx(t, p))
	p.Deliver(make([]byte, 60))
	p.Deliver(make([]byte, 60))
	p.Poll()
	got = append(got, chunks(getRx(t, p))...)
	if want := []uint64{10, 11, 13, 12}; !equal(got, want) {
		t.Fatalf("chunks %v, want %v", got, want)
	}
	p.Deliver(make([]byte, 60))
	p.Deliver(make([]byte, 60))
	p.Poll()
	if got, want := chunks(getRx(t, p)), []uint64{14, 15}; !equal(got, want) {
		t.Fatalf("then %v, want %v", got, want)
	}
	if s, c := mustStats(t, p), p.Counters(); s.RxRingFull != 1 || c.Recycled != 1 || c.RxDescs != 6 {
		t.Fatalf("stats %+v counters %+v", s, c)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestZeroCopyXDPDrop: frames the program drops take no sequence number
// and give their buffer back; in copy mode they take no buffer at all.
func TestZeroCopyXDPDrop(t *testing.T) {
	for _, zc := range []bool{true, false} {
		p, umem := newTestPort(t, func(c *Config) { c.ZeroCopy = zc; c.DriverRing = 4; c.XDPDrop = 0.5; c.Faults.Seed = 3 })
		putFill(t, p, 1*testFS, 2*testFS, 3*testFS, 4*testFS, 5*testFS, 6*testFS, 7*testFS, 8*testFS)
		for range 8 {
			p.Deliver(make([]byte, 60))
		}
		p.Poll()
		ds := getRx(t, p)
		c := p.Counters()
		if c.XDPDrops == 0 || c.XDPDrops == 8 || int(c.XDPDrops)+len(ds) != 8 || c.RxFrames != 8 {
			t.Fatalf("zc %v: %d received, counters %+v", zc, len(ds), c)
		}
		if zc && c.Recycled != c.XDPDrops || !zc && c.Recycled != 0 {
			t.Fatalf("zc %v: recycled %d", zc, c.Recycled)
		}
		for i, d := range ds {
			if seq := binary.LittleEndian.Uint32(umem[d.Addr-MetaSize+8:]); seq != uint32(i+1) {
				t.Errorf("zc %v: frame %d has seq %d", zc, i, seq)
			}
		}
		fill, _, _, _ := p.Rings()
		_, cons := fill.Indices()
		if !zc && cons != uint32(len(ds)) {
			t.Errorf("copy mode consumed %d FILL entries for %d frames", cons, len(ds))
		}
	}
}

// TestZeroCopyNeedWakeup: a driver out of buffers sets NEED_WAKEUP on
// FILL and stops; frames wait and arriving ones do not schedule it; WakeRx
// does, and a poll with buffers clears the flag.
func TestZeroCopyNeedWakeup(t *testing.T) {
	p, _ := zcPort(t, nil)
	fill, _, _, _ := p.Rings()
	putFill(t, p, 1*testFS, 2*testFS)
	for range 4 {
		p.Deliver(make([]byte, 60))
	}
	<-p.wake // what Deliver scheduled
	if n := p.Poll(); n != 2 {
		t.Fatalf("poll took %d, want 2", n)
	}
	if !fill.NeedWakeup() || !p.starved.Load() || p.Counters().Starved != 1 {
		t.Fatalf("flag %v starved %v counters %+v", fill.NeedWakeup(), p.starved.Load(), p.Counters())
	}
	p.Deliver(make([]byte, 60))
	if len(p.wake) != 0 {
		t.Fatal("a frame scheduled a poll of a starved driver")
	}
	putFill(t, p, 3*testFS, 4*testFS, 5*testFS)
	if e := p.WakeRx(); e != 0 || len(p.wake) != 1 || p.starved.Load() {
		t.Fatalf("WakeRx = %v, wake pending %d, starved %v", e, len(p.wake), p.starved.Load())
	}
	if n := p.Poll(); n != 3 {
		t.Fatalf("poll after the wakeup took %d, want 3", n)
	}
	if !fill.NeedWakeup() {
		t.Fatal("ring empty again: flag must be set")
	}
	putFill(t, p, 6*testFS, 7*testFS)
	p.WakeRx()
	if n := p.Poll(); n != 0 || fill.NeedWakeup() {
		t.Fatalf("poll took %d, flag %v: want 0 and clear (buffers in the ring)", n, fill.NeedWakeup())
	}
	if s := mustStats(t, p); s.RxDropped != 0 {
		t.Fatalf("a zero-copy driver without buffers does not drop: %+v", s)
	}
}

// TestZeroCopyPlacement: no copy: the frame is at Headroom + 256 of its
// buffer and the record in place before it, in the metadata area or
// prepended (the descriptor then starts 16 bytes earlier).
func TestZeroCopyPlacement(t *testing.T) {
	for _, rec := range []Record{RecordMeta, RecordHead, RecordNone} {
		p, umem := zcPort(t, func(c *Config) { c.Headroom = 128; c.Record = rec })
		putFill(t, p, 5*testFS+300)
		f := NewSource(Traffic{Seed: 2}).Next()
		p.Deliver(f)
		p.Poll()
		ds := getRx(t, p)
		if len(ds) != 1 {
			t.Fatalf("record %d: %d descriptors", rec, len(ds))
		}
		d, data := ds[0], uint64(5*testFS+128+PacketHeadroom)
		want := xsk.Desc{Addr: data, Len: uint32(len(f))}
		if rec == RecordHead {
			want = xsk.Desc{Addr: data - MetaSize, Len: uint32(len(f)) + MetaSize}
		}
		if d != want || string(umem[data:data+uint64(len(f))]) != string(f) {
			t.Fatalf("record %d: desc %+v, want %+v (frame intact: %v)", rec, d, want, string(umem[data:data+uint64(len(f))]) == string(f))
		}
		m := binary.LittleEndian.Uint32(umem[data-MetaSize:])
		if wantM := map[Record]uint32{RecordMeta: MetaMagic, RecordHead: HeadMagic, RecordNone: 0}[rec]; m != wantM {
			t.Fatalf("record %d: magic %#x before the frame, want %#x", rec, m, wantM)
		}
	}
}
