package kmodel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xsk"
)

// The model must serve the engine exactly as *xsk.Socket does (engine
// asserts that side in port.go).
var _ engine.Port = (*Port)(nil)

const testFS = 2048

func newTestPort(t testing.TB, mod func(*Config)) (*Port, []byte) {
	t.Helper()
	umem := make([]byte, 64*testFS)
	cfg := Config{Umem: umem, FrameSize: testFS, FillSize: 64, CompSize: 64, RxSize: 64, TxSize: 64, Queue: 3}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewPort(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, umem
}

func mustStats(t testing.TB, p *Port) xsk.Statistics {
	t.Helper()
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func putFill(t testing.TB, p *Port, addrs ...uint64) {
	t.Helper()
	fill, _, _, _ := p.Rings()
	if n, err := fill.Put(addrs); err != nil || n != len(addrs) {
		t.Fatalf("fill put %d of %d: %v", n, len(addrs), err)
	}
}

func getRx(t testing.TB, p *Port) []xsk.Desc {
	t.Helper()
	_, _, rx, _ := p.Rings()
	buf := make([]xsk.Desc, 256)
	n, err := rx.Get(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestConfigValidation(t *testing.T) {
	umem := make([]byte, 8*4096)
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Umem: umem}, true},
		{"no umem", Config{}, false},
		{"partial chunk", Config{Umem: umem[:4096+1]}, false},
		{"frame 3000", Config{Umem: make([]byte, 3000*4), FrameSize: 3000}, false},
		{"frame 1024", Config{Umem: umem, FrameSize: 1024}, false},
		{"headroom too large", Config{Umem: umem, Headroom: 4096 - 256 - 448 + 1}, false},
		{"headroom max", Config{Umem: umem, Headroom: 4096 - 256 - 448}, true},
		{"ring not pow2", Config{Umem: umem, RxSize: 100}, false},
		{"fault > 1", Config{Umem: umem, Faults: Faults{Drop: 1.5}}, false},
		{"faults sum > 1", Config{Umem: umem, Faults: Faults{Drop: 0.6, BadAddr: 0.6}}, false},
		{"negative fault", Config{Umem: umem, Faults: Faults{SpuriousCompletion: -1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPort(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestIdentityAndFlags(t *testing.T) {
	p, _ := newTestPort(t, func(c *Config) { c.Ifname = "veth-x"; c.TxBudget = 64 })
	if p.Ifname() != "veth-x" || p.Queue() != 3 || p.TxBatch() != 64 {
		t.Fatalf("identity %q %d %d", p.Ifname(), p.Queue(), p.TxBatch())
	}
	fill, comp, rx, tx := p.Rings()
	// Copy mode: TX always needs a sendto, FILL never asks for a wake-up.
	if !tx.NeedWakeup() || fill.NeedWakeup() || rx.Flags() != 0 || comp.Flags() != 0 {
		t.Fatalf("flags fill %d comp %d rx %d tx %d", fill.Flags(), comp.Flags(), rx.Flags(), tx.Flags())
	}
	// ... and keeps it after traffic.
	tx.Put([]xsk.Desc{{Addr: 0, Len: 60}})
	p.Kick()
	if !tx.NeedWakeup() {
		t.Fatal("TX need_wakeup cleared")
	}
}

// TestRxPlacement checks copy mode's layout: the descriptor points at
// chunk_base + headroom + 256 whatever offset the FILL entry had, and the
// XDP program's record sits right before the frame.
func TestRxPlacement(t *testing.T) {
	for _, headroom := range []uint32{0, 128, 1024} {
		p, umem := newTestPort(t, func(c *Config) { c.Headroom = headroom })
		tr := Traffic{Seed: 7, MinLen: 60, MaxLen: 1000}
		src := NewSource(tr)
		fillAddrs := []uint64{5 * testFS, 9*testFS + 17, 2*testFS + 2047}
		putFill(t, p, fillAddrs...)
		var frames [][]byte
		for range fillAddrs {
			f := src.Next()
			frames = append(frames, bytes.Clone(f))
			if !p.Deliver(f) {
				t.Fatal("deliver refused")
			}
		}
		if n := p.Poll(); n != 3 {
			t.Fatalf("poll took %d", n)
		}
		descs := getRx(t, p)
		if len(descs) != 3 {
			t.Fatalf("got %d descriptors", len(descs))
		}
		for i, d := range descs {
			want := fillAddrs[i]&^(testFS-1) + uint64(headroom) + PacketHeadroom
			if d.Addr != want || int(d.Len) != len(frames[i]) || d.Options != 0 {
				t.Errorf("headroom %d desc %d = %+v, want addr %#x len %d", headroom, i, d, want, len(frames[i]))
			}
			if !bytes.Equal(umem[d.Addr:d.Addr+uint64(d.Len)], frames[i]) {
				t.Errorf("frame %d bytes differ", i)
			}
			m := umem[d.Addr-MetaSize : d.Addr]
			le := binary.LittleEndian
			if got := [4]uint32{le.Uint32(m), le.Uint32(m[4:]), le.Uint32(m[8:]), le.Uint32(m[12:])}; got != [4]uint32{MetaMagic, d.Len, uint32(i + 1), 3} {
				t.Errorf("metadata %d = %#x", i, got)
			}
		}
		if s := mustStats(t, p); s != (xsk.Statistics{}) {
			t.Errorf("stats %+v", s)
		}
	}
}

// TestRxCounters drives the RX error paths of __xsk_rcv and xp_alloc.
func TestRxCounters(t *testing.T) {
	big := testFS - PacketHeadroom // RX frame size with headroom 0
	for _, tc := range []struct {
		name      string
		rxSize    uint32
		fill      []uint64
		lens      []int
		want      xsk.Statistics
		wantDescs int
		wantFillC uint32 // FILL consumer after the poll
		wantInval uint64
	}{
		{name: "fill empty", rxSize: 64, lens: []int{60, 60, 60},
			want: xsk.Statistics{RxDropped: 3, RxFillRingEmptyDescs: 3}},
		{name: "fill runs out", rxSize: 64, fill: []uint64{0, testFS}, lens: []int{60, 60, 60, 60},
			want: xsk.Statistics{RxDropped: 2, RxFillRingEmptyDescs: 2}, wantDescs: 2, wantFillC: 2},
		// The buffer taken for a frame that finds RX full goes back to the
		// pool (xsk_buff_free): FILL's consumer counts it, the next frame
		// gets it.
		{name: "rx full", rxSize: 4, fill: []uint64{0, 1 * testFS, 2 * testFS, 3 * testFS, 4 * testFS, 5 * testFS},
			lens: []int{60, 60, 60, 60, 60, 60}, want: xsk.Statistics{RxRingFull: 2}, wantDescs: 4, wantFillC: 5},
		{name: "oversize", rxSize: 64, fill: []uint64{0, testFS}, lens: []int{big + 1, big, testFS * 2},
			want: xsk.Statistics{RxDropped: 2}, wantDescs: 1, wantFillC: 1},
		// Invalid FILL entries are consumed and skipped without a counter.
		{name: "invalid fill", rxSize: 64, fill: []uint64{64 * testFS, 1 << 40, 7 * testFS}, lens: []int{60},
			wantDescs: 1, wantFillC: 3, wantInval: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTestPort(t, func(c *Config) { c.RxSize = tc.rxSize })
			if len(tc.fill) > 0 {
				putFill(t, p, tc.fill...)
			}
			for _, n := range tc.lens {
				p.Deliver(make([]byte, n))
			}
			p.Poll()
			if s := mustStats(t, p); s != tc.want {
				t.Errorf("stats %+v, want %+v", s, tc.want)
			}
			if d := getRx(t, p); len(d) != tc.wantDescs {
				t.Errorf("%d descriptors, want %d", len(d), tc.wantDescs)
			}
			fill, _, _, _ := p.Rings()
			if _, c := fill.Indices(); c != tc.wantFillC {
				t.Errorf("FILL consumer %d, want %d", c, tc.wantFillC)
			}
			if c := p.Counters(); c.FillInvalid != tc.wantInval || c.RxFrames != uint64(len(tc.lens)) {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

// TestRxFullKeepsOrder: after RX was full the held buffer serves the next
// frame, so RX addresses still follow FILL order.
func TestRxFullKeepsOrder(t *testing.T) {
	p, _ := newTestPort(t, func(c *Config) { c.RxSize = 2 })
	putFill(t, p, 10*testFS, 11*testFS, 12*testFS, 13*testFS)
	for range 3 {
		p.Deliver(make([]byte, 60))
	}
	p.Poll()
	d := getRx(t, p)
	p.Deliver(make([]byte, 60))
	p.Poll()
	d = append(d, getRx(t, p)...)
	var got []uint64
	for _, x := range d {
		got = append(got, x.Addr/testFS)
	}
	if len(got) != 3 || got[0] != 10 || got[1] != 11 || got[2] != 12 {
		t.Fatalf("chunks %v, want [10 11 12]", got)
	}
}

// TestNapiBudget: one poll takes at most NapiBudget frames and publishes
// RX and FILL once, at its end.
func TestNapiBudget(t *testing.T) {
	p, _ := newTestPort(t, func(c *Config) { c.FillSize = 128; c.RxSize = 128; c.Umem = make([]byte, 128*testFS) })
	fill, _, rx, _ := p.Rings()
	var addrs []uint64
	for i := range 100 {
		addrs = append(addrs, uint64(i)*testFS)
	}
	putFill(t, p, addrs...)
	for range 100 {
		p.Deliver(make([]byte, 64))
	}
	for _, want := range []int{64, 36, 0} {
		if n := p.Poll(); n != want {
			t.Fatalf("poll took %d, want %d", n, want)
		}
	}
	if prod, _ := rx.Indices(); prod != 100 {
		t.Fatalf("RX producer %d", prod)
	}
	if _, c := fill.Indices(); c != 100 {
		t.Fatalf("FILL consumer %d", c)
	}
}

func TestBacklogBounded(t *testing.T) {
	p, _ := newTestPort(t, func(c *Config) { c.Backlog = 4 })
	for i := range 6 {
		if ok := p.Deliver(make([]byte, 60)); ok != (i < 4) {
			t.Fatalf("deliver %d = %v", i, ok)
		}
	}
	if c := p.Counters(); c.Backlogged != 4 || c.BacklogDrops != 2 {
		t.Fatalf("counters %+v", c)
	}
	p.Close()
	if p.Deliver(make([]byte, 60)) || p.Kick() != unix.ENETDOWN {
		t.Fatal("closed port still accepts")
	}
}

type refuser struct{ n int }

func (r *refuser) Deliver([]byte) bool { r.n++; return false }

// TestTx drives __xsk_generic_xmit's outcomes.
func TestTx(t *testing.T) {
	valid := func(i int) xsk.Desc { return xsk.Desc{Addr: uint64(i)*testFS + 256, Len: 100} }
	many := func(n int) []xsk.Desc {
		var d []xsk.Desc
		for i := range n {
			d = append(d, valid(i))
		}
		return d
	}
	type want struct {
		errs     []unix.Errno // one per Kick
		stats    xsk.Statistics
		comp     []uint64
		txCons   uint32
		received int
	}
	for _, tc := range []struct {
		name     string
		compSize uint32
		refuse   bool
		descs    []xsk.Desc
		want     want
	}{
		{name: "empty", want: want{errs: []unix.Errno{0}, stats: xsk.Statistics{TxRingEmptyDescs: 1}}},
		{name: "one", descs: many(1), want: want{errs: []unix.Errno{0}, stats: xsk.Statistics{TxRingEmptyDescs: 1},
			comp: []uint64{valid(0).Addr}, txCons: 1, received: 1}},
		{name: "budget", descs: many(40), want: want{errs: []unix.Errno{unix.EAGAIN, 0}, stats: xsk.Statistics{TxRingEmptyDescs: 1},
			txCons: 40, received: 40}},
		{name: "exact budget", descs: many(32), want: want{errs: []unix.Errno{0}, stats: xsk.Statistics{TxRingEmptyDescs: 1},
			txCons: 32, received: 32}},
		{name: "comp full", compSize: 4, descs: many(6), want: want{errs: []unix.Errno{unix.EAGAIN, unix.EAGAIN},
			txCons: 4, received: 4}},
		{name: "len 0", descs: append([]xsk.Desc{{Addr: 0, Len: 0}}, many(1)...), want: want{errs: []unix.Errno{0, 0},
			stats: xsk.Statistics{TxInvalidDescs: 1, TxRingEmptyDescs: 1}, comp: []uint64{0, valid(0).Addr}, txCons: 2, received: 1}},
		{name: "crosses chunk", descs: []xsk.Desc{{Addr: testFS - 10, Len: 11}}, want: want{errs: []unix.Errno{0, 0},
			stats: xsk.Statistics{TxInvalidDescs: 1, TxRingEmptyDescs: 1}, comp: []uint64{testFS - 10}, txCons: 1}},
		{name: "beyond umem", descs: []xsk.Desc{{Addr: 640 * testFS, Len: 60}}, want: want{errs: []unix.Errno{0},
			stats: xsk.Statistics{TxInvalidDescs: 1}, comp: []uint64{640 * testFS}, txCons: 1}},
		{name: "unknown option", descs: []xsk.Desc{{Addr: 0, Len: 60, Options: 0x80}}, want: want{errs: []unix.Errno{0},
			stats: xsk.Statistics{TxInvalidDescs: 1}, comp: []uint64{0}, txCons: 1}},
		// §7.4: EINVAL, the descriptor stays, its address completes anyway.
		{name: "tx metadata", descs: []xsk.Desc{{Addr: 0, Len: 60, Options: optTxMetadata}}, want: want{
			errs: []unix.Errno{unix.EINVAL, unix.EINVAL}, comp: []uint64{0, 0}}},
		{name: "peer drops", refuse: true, descs: many(2), want: want{errs: []unix.Errno{unix.EBUSY, unix.EBUSY, 0},
			stats: xsk.Statistics{TxRingEmptyDescs: 1}, txCons: 2, received: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, umem := newTestPort(t, func(c *Config) {
				if tc.compSize != 0 {
					c.CompSize = tc.compSize
				}
			})
			for i := range umem {
				umem[i] = byte(i)
			}
			sink := &recorder{}
			ref := &refuser{}
			if tc.refuse {
				p.SetPeer(ref)
			} else {
				p.SetPeer(sink)
			}
			_, comp, _, tx := p.Rings()
			if len(tc.descs) > 0 {
				if n, _ := tx.Put(tc.descs); n != len(tc.descs) {
					t.Fatal("tx put")
				}
			}
			for i, w := range tc.want.errs {
				if e := p.Kick(); e != w {
					t.Fatalf("kick %d = %v, want %v", i, e, w)
				}
			}
			if s := mustStats(t, p); s != tc.want.stats {
				t.Errorf("stats %+v, want %+v", s, tc.want.stats)
			}
			if _, c := tx.Indices(); c != tc.want.txCons {
				t.Errorf("TX consumer %d, want %d", c, tc.want.txCons)
			}
			got := make([]uint64, 64)
			n, _ := comp.Get(got)
			if tc.want.comp != nil && !equalU64(got[:n], tc.want.comp) {
				t.Errorf("COMP %#x, want %#x", got[:n], tc.want.comp)
			}
			if tc.want.comp == nil && n != int(tc.want.txCons) {
				t.Errorf("COMP has %d, want %d", n, tc.want.txCons)
			}
			if r := len(sink.frames) + ref.n; r != tc.want.received {
				t.Errorf("peer got %d frames, want %d", r, tc.want.received)
			}
			var sent []xsk.Desc
			for _, d := range tc.descs {
				if p.validTx(d) {
					sent = append(sent, d)
				}
			}
			for i, f := range sink.frames {
				d := sent[i]
				if !bytes.Equal(f, umem[d.Addr:d.Addr+uint64(d.Len)]) {
					t.Errorf("frame %d bytes differ", i)
				}
			}
		})
	}
}

type recorder struct{ frames [][]byte }

func (r *recorder) Deliver(f []byte) bool { r.frames = append(r.frames, bytes.Clone(f)); return true }

func equalU64(a, b []uint64) bool {
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

// TestWire: a veth pair carries a's TX to b's RX.
func TestWire(t *testing.T) {
	umem := make([]byte, 64*testFS)
	a, _ := NewPort(Config{Umem: umem, FrameSize: testFS, Ifname: "a", RxSize: 64, TxSize: 64, FillSize: 64, CompSize: 64})
	b, _ := NewPort(Config{Umem: umem, FrameSize: testFS, Ifname: "b", RxSize: 64, TxSize: 64, FillSize: 64, CompSize: 64})
	Wire(a, b)
	tr := Traffic{Seed: 1}
	f := tr.Frame(make([]byte, 64), 42)
	copy(umem[3*testFS:], f)
	_, _, _, tx := a.Rings()
	tx.Put([]xsk.Desc{{Addr: 3 * testFS, Len: uint32(len(f))}})
	putFill(t, b, 9*testFS)
	if e := a.Kick(); e != 0 {
		t.Fatal(e)
	}
	b.Poll()
	d := getRx(t, b)
	if len(d) != 1 {
		t.Fatalf("b received %d", len(d))
	}
	if seq, err := tr.Check(umem[d[0].Addr : d[0].Addr+uint64(d[0].Len)]); err != nil || seq != 42 {
		t.Fatalf("check: seq %d, %v", seq, err)
	}
}

// TestTraffic: frames parse as the pattern's UDP flow, and Check catches
// any flipped byte.
func TestTraffic(t *testing.T) {
	tr := Traffic{Seed: 99, MinLen: 60, MaxLen: 1514}
	buf := make([]byte, 1514)
	var pk packet.Packet
	lens := map[int]bool{}
	for seq := range uint64(200) {
		f := tr.Frame(buf, seq)
		lens[len(f)] = true
		if len(f) < 60 || len(f) > 1514 {
			t.Fatalf("len %d", len(f))
		}
		if err := pk.Parse(f); err != nil {
			t.Fatalf("parse %d: %v", seq, err)
		}
		if pk.Proto != packet.ProtoUDP || pk.Src != netip.MustParseAddr("198.18.0.1") || pk.Dst != netip.MustParseAddr("198.18.0.2") {
			t.Fatalf("flow %v -> %v proto %d", pk.Src, pk.Dst, pk.Proto)
		}
		if got, err := tr.Check(f); err != nil || got != seq {
			t.Fatalf("check %d: %d %v", seq, got, err)
		}
		i := int(seq) % len(f)
		f[i] ^= 0x40
		if _, err := tr.Check(f); err == nil {
			t.Fatalf("seq %d: flipped byte %d not caught", seq, i)
		}
	}
	if len(lens) < 100 {
		t.Errorf("only %d distinct lengths", len(lens))
	}
	if _, err := tr.Check(make([]byte, 10)); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
}

func TestSink(t *testing.T) {
	tr := Traffic{Seed: 3}
	s, src := NewSink(tr), NewSource(tr)
	f0 := bytes.Clone(src.Next())
	src.Next() // seq 1 lost
	f2 := src.Next()
	s.Deliver(f0)
	s.Deliver(f2)
	s.Deliver(f0)
	s.Deliver([]byte("junk"))
	want := SinkStats{Received: 4, Unique: 2, Duplicates: 1, Malformed: 1}
	if st := s.Stats(); st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	if m, n := s.Missing(src.Sent(), 10); n != 1 || m[0] != 1 {
		t.Fatalf("missing %v %d", m, n)
	}
	if s.Err() == nil || !s.Has(2) || s.Has(1) {
		t.Fatal("sink state")
	}
}
