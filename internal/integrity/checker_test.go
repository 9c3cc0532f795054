package integrity

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

const (
	unitFS     = 4096
	unitFrames = 64
	unitRxOff  = xsk.PacketHeadroom
)

// unit drives one Checker directly, playing both the engine (posting to
// the rings after the checker approves) and the kernel.
type unit struct {
	t      testing.TB
	checks *Checks
	k      engine.Checker
	ports  [2]*fakePort
	umem   *xsk.Umem
	area   []byte
	seq    [2]uint32
	out    []engine.Disposition
}

func newUnit(tb testing.TB, cfg Config, workers int) *unit {
	return newUnitMeta(tb, cfg, workers, false)
}

// newUnitMeta is newUnit, on a UMEM with a TX metadata area if txMeta.
func newUnitMeta(tb testing.TB, cfg Config, workers int, txMeta bool) *unit {
	area := make([]byte, unitFrames*unitFS)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: unitFS, NumFrames: unitFrames, TxMetadata: txMeta})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.RxOffset = u.RxOffset()
	cfg.Logger = quietLogger()
	c, err := New(u, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	x := &unit{t: tb, checks: c, umem: u, area: area, out: make([]engine.Disposition, 256)}
	x.ports = [2]*fakePort{newFakePort(tb, "outer", 256), newFakePort(tb, "inner", 256)}
	x.k = c.NewChecker(0, x.ports[0], x.ports[1])
	for w := 1; w < workers; w++ {
		c.NewChecker(w, newFakePort(tb, "outer", 256), newFakePort(tb, "inner", 256))
	}
	return x
}

func base(ci int) uint64 { return uint64(ci) * unitFS }

func (x *unit) disp(n int) []engine.Disposition {
	d := x.out[:n]
	clear(d)
	return d
}

// fill asks PostFill and, like the engine, posts the approved entries.
func (x *unit) fill(s engine.Side, chunks ...int) []engine.Disposition {
	addrs := make([]uint64, len(chunks))
	for i, c := range chunks {
		addrs[i] = base(c)
	}
	return x.fillAddrs(s, addrs, len(addrs))
}

func (x *unit) fillAddrs(s engine.Side, addrs []uint64, post int) []engine.Disposition {
	d := x.disp(len(addrs))
	x.k.PostFill(s, addrs, d)
	var ok []uint64
	for i, a := range addrs {
		if d[i] == engine.Keep {
			ok = append(ok, a)
		}
	}
	if _, err := x.ports[s].fill.Put(ok[:min(post, len(ok))]); err != nil {
		x.t.Fatal(err)
	}
	x.ports[s].consume()
	return append([]engine.Disposition(nil), d...)
}

// frame writes a valid IPv4 frame of n bytes and its XDP metadata into
// chunk ci as the kernel would for side s, and returns its descriptor.
func (x *unit) frame(s engine.Side, ci, n int) xsk.Desc {
	x.seq[s]++
	return x.frameSeq(ci, n, x.seq[s])
}

func (x *unit) frameSeq(ci, n int, seq uint32) xsk.Desc {
	a := base(ci) + unitRxOff
	f := x.area[a : a+uint64(n)]
	clear(f)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f[14] = 0x45
	binary.BigEndian.PutUint16(f[16:], uint16(n-14))
	m := x.area[a-xdpprog.MetaSize : a]
	binary.LittleEndian.PutUint32(m[0:], xdpprog.MetaMagic)
	binary.LittleEndian.PutUint32(m[4:], uint32(n))
	binary.LittleEndian.PutUint32(m[8:], seq)
	binary.LittleEndian.PutUint32(m[12:], 0)
	return xsk.Desc{Addr: a, Len: uint32(n)}
}

func (x *unit) recv(s engine.Side, descs ...xsk.Desc) []engine.Disposition {
	d := x.disp(len(descs))
	x.k.Received(s, descs, d)
	return append([]engine.Disposition(nil), d...)
}

func (x *unit) tx(s engine.Side, descs ...xsk.Desc) []engine.Disposition {
	return x.txPost(s, descs, len(descs))
}

func (x *unit) txPost(s engine.Side, descs []xsk.Desc, post int) []engine.Disposition {
	d := x.disp(len(descs))
	x.k.PostTx(s, descs, d)
	var ok []xsk.Desc
	for i, dd := range descs {
		if d[i] == engine.Keep {
			ok = append(ok, dd)
		}
	}
	if _, err := x.ports[s].tx.Put(ok[:min(post, len(ok))]); err != nil {
		x.t.Fatal(err)
	}
	x.ports[s].consume()
	return append([]engine.Disposition(nil), d...)
}

func (x *unit) comp(s engine.Side, addrs ...uint64) []engine.Disposition {
	d := x.disp(len(addrs))
	x.k.Completed(s, addrs, d)
	return append([]engine.Disposition(nil), d...)
}

// cycle takes chunk ci through FILL, RX, TX and COMPLETION.
func (x *unit) cycle(ci int) {
	x.fill(engine.Outer, ci)
	d := x.frame(engine.Outer, ci, 60)
	x.recv(engine.Outer, d)
	x.tx(engine.Inner, d)
	x.comp(engine.Inner, d.Addr)
}

var (
	K = engine.Keep
	F = engine.Free
	Q = engine.Quarantine
)

func TestTransitions(t *testing.T) {
	const O, I = engine.Outer, engine.Inner
	tests := []unitCase{
		{name: "clean cycle", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { x.cycle(3); x.cycle(3); return x.fill(O, 3) }},
		{name: "double fill", cls: DoubleFill, want: []engine.Disposition{Q}, in: "in FILL of outer",
			run: func(x *unit) []engine.Disposition { x.fill(O, 1); return x.fill(O, 1) }},
		{name: "double fill in one batch", cls: DoubleFill, want: []engine.Disposition{K, Q}, in: "being posted",
			run: func(x *unit) []engine.Disposition { return x.fill(O, 1, 1) }},
		{name: "fill on both sides", cls: DoubleFill, want: []engine.Disposition{Q}, in: "in FILL of outer",
			run: func(x *unit) []engine.Disposition { x.fill(O, 1); return x.fill(I, 1) }},
		{name: "fill while tx", cls: FillWhileTx, want: []engine.Disposition{Q}, in: "on TX of inner",
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 60)
				x.recv(O, d)
				x.tx(I, d)
				return x.fill(O, 1)
			}},
		{name: "tx of a frame in fill", cls: TxNotOwned, want: []engine.Disposition{Q}, in: "in FILL of outer",
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				return x.tx(I, xsk.Desc{Addr: base(1) + unitRxOff, Len: 60})
			}},
		{name: "completion never sent", cls: CompletionNotSent, want: []engine.Disposition{Q}, in: "free (on worker 0's free list)",
			run: func(x *unit) []engine.Disposition { return x.comp(I, base(2)+unitRxOff) }},
		{name: "completion on the other socket", cls: CompletionNotSent, want: []engine.Disposition{Q}, in: "on TX of inner",
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 60)
				x.recv(O, d)
				x.tx(I, d)
				return x.comp(O, d.Addr)
			}},
		{name: "foreign frame fill", cls: ForeignFrame, want: []engine.Disposition{Q}, in: "belongs to worker 1",
			run: func(x *unit) []engine.Disposition { return x.fill(O, unitFrames/2+1) }},
		{name: "foreign frame tx", cls: ForeignFrame, want: []engine.Disposition{Q},
			run: func(x *unit) []engine.Disposition {
				return x.tx(O, xsk.Desc{Addr: base(unitFrames-1) + unitRxOff, Len: 60})
			}},
		{name: "fill beyond umem", cls: BadAddr, want: []engine.Disposition{Q}, exp: unitFrames * unitFS, got: unitFrames*unitFS + 4096,
			run: func(x *unit) []engine.Disposition {
				return x.fillAddrs(O, []uint64{unitFrames*unitFS + 4096}, 1)
			}},
		{name: "rx not in fill", cls: RxNotInFill, want: []engine.Disposition{Q}, in: "free (on worker 0's free list)",
			run: func(x *unit) []engine.Disposition { return x.recv(O, x.frame(O, 5, 60)) }},
		{name: "rx of the other socket's fill", cls: RxNotInFill, want: []engine.Disposition{Q}, in: "in FILL of inner",
			run: func(x *unit) []engine.Disposition { x.fill(I, 5); return x.recv(O, x.frame(O, 5, 60)) }},
		{name: "unwritten slot", cls: UnwrittenSlot, want: []engine.Disposition{Q},
			run: func(x *unit) []engine.Disposition { x.fill(O, 1); return x.recv(O, xsk.Desc{Addr: xsk.Poison}) }},
		{name: "uninitialized", cls: UninitializedDesc, want: []engine.Disposition{Q},
			run: func(x *unit) []engine.Disposition { x.fill(O, 1); return x.recv(O, xsk.Desc{}) }},
		{name: "rx offset", cls: BadAddr, want: []engine.Disposition{F}, exp: unitRxOff, got: unitRxOff + 8,
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 60)
				d.Addr += 8
				return x.recv(O, d)
			}},
		{name: "rx beyond umem", cls: BadAddr, want: []engine.Disposition{Q},
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				return x.recv(O, xsk.Desc{Addr: unitFrames*unitFS + unitRxOff, Len: 60})
			}},
		{name: "rx len", cls: BadLen, want: []engine.Disposition{F}, exp: unitFS - unitRxOff, got: unitFS,
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 60)
				d.Len = unitFS
				return x.recv(O, d)
			}},
		{name: "rx options", cls: BadOptions, want: []engine.Disposition{F}, got: 1,
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 60)
				d.Options = 1
				return x.recv(O, d)
			}},
		{name: "tx crossing the chunk", cls: BadLen, want: []engine.Disposition{Q},
			run: func(x *unit) []engine.Disposition { return x.tx(O, xsk.Desc{Addr: base(1) + 4000, Len: 200}) }},
		{name: "out of order", cls: OutOfOrder, want: []engine.Disposition{F, K}, exp: base(1), got: base(2), in: "1 deep",
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1, 2, 3)
				x.seq[O]++ // the frame chunk 1 would have held
				return x.recv(O, x.frame(O, 2, 60), x.frame(O, 3, 60))
			}},
		{name: "duplicate in batch", cls: Duplicate, want: []engine.Disposition{K, Q, K},
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1, 2)
				d := x.frame(O, 1, 60)
				return x.recv(O, d, d, x.frame(O, 2, 60))
			}},
		{name: "duplicate after recycle", cls: Duplicate, want: []engine.Disposition{Q, K},
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1, 2)
				d := x.frame(O, 1, 60)
				x.recv(O, d)
				x.tx(I, d)
				x.comp(I, d.Addr)
				x.fill(O, 1) // chunk 1 queued again, behind chunk 2
				return x.recv(O, d, x.frame(O, 2, 60))
			}},
		{name: "meta len", cls: MetaLenMismatch, want: []engine.Disposition{F}, exp: 60, got: 70,
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 60)
				d.Len = 70
				return x.recv(O, d)
			}},
		{name: "meta magic", cls: BadMeta, want: []engine.Disposition{Q}, exp: uint64(xdpprog.MetaMagic),
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 60)
				clear(x.area[d.Addr-xdpprog.MetaSize : d.Addr])
				return x.recv(O, d)
			}},
		{name: "seq regression at the front", cls: SeqRegression, want: []engine.Disposition{K, Q}, exp: 6, got: 3,
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1, 2)
				x.seq[O] = 4
				return x.recv(O, x.frame(O, 1, 60), x.frameSeq(2, 60, 3))
			}},
		{name: "ip length is not a violation", cls: noClass, want: []engine.Disposition{F},
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1)
				d := x.frame(O, 1, 100)
				binary.BigEndian.PutUint16(x.area[d.Addr+16:], 200)
				return x.recv(O, d)
			}},
		{name: "fill partly posted", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition {
				x.fillAddrs(O, []uint64{base(1), base(2)}, 1) // the ring took only chunk 1
				return x.fill(O, 2)
			}},
		{name: "tx partly posted", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition {
				x.fill(O, 1, 2)
				d1, d2 := x.frame(O, 1, 60), x.frame(O, 2, 60)
				x.recv(O, d1, d2)
				x.txPost(I, []xsk.Desc{d1, d2}, 1) // chunk 2 went back to the free list
				return x.fill(O, 2)
			}},
	}
	runUnitCases(t, tests)
}

func TestIPLengthCounted(t *testing.T) {
	x := newUnit(t, DefaultConfig(), 1)
	x.fill(engine.Outer, 1)
	d := x.frame(engine.Outer, 1, 100)
	binary.BigEndian.PutUint16(x.area[d.Addr+16:], 20) // IP says 20 bytes: 66 trailing bytes
	if got := x.recv(engine.Outer, d); got[0] != engine.Free {
		t.Fatalf("disposition %v, want Free", got[0])
	}
	if n := x.checks.Counts()[IPLength]; n != 1 {
		t.Fatalf("ip_length count %d", n)
	}
	// The chunk went back to the worker: it may be posted again.
	if got := x.fill(engine.Outer, 1); got[0] != engine.Keep {
		t.Fatalf("refill after ip_length drop: %v, violations %v", got, x.checks.Violations())
	}
}

func TestIPLengthOK(t *testing.T) {
	mk := func(n int, et uint16, tot int, vlan bool) []byte {
		f := make([]byte, n)
		off := 14
		if vlan {
			binary.BigEndian.PutUint16(f[12:], 0x8100)
			off = 18
		}
		binary.BigEndian.PutUint16(f[off-2:], et)
		switch et {
		case 0x0800:
			f[off] = 0x45
			binary.BigEndian.PutUint16(f[off+2:], uint16(tot))
		case 0x86dd:
			f[off] = 0x60
			binary.BigEndian.PutUint16(f[off+4:], uint16(tot-40))
		}
		return f
	}
	for _, tt := range []struct {
		name string
		f    []byte
		ok   bool
	}{
		{"ipv4 exact", mk(100, 0x0800, 86, false), true},
		{"ipv4 padded to 60", mk(60, 0x0800, 28, false), true},
		{"ipv4 truncated", mk(100, 0x0800, 200, false), false},
		{"ipv4 trailing bytes", mk(100, 0x0800, 50, false), false},
		{"ipv4 total below header", mk(60, 0x0800, 10, false), false},
		{"ipv6 exact", mk(114, 0x86dd, 100, false), true},
		{"ipv6 truncated", mk(80, 0x86dd, 100, false), false},
		{"vlan ipv4", mk(104, 0x0800, 86, true), true},
		{"vlan ipv4 truncated", mk(90, 0x0800, 86, true), false},
		{"arp", mk(60, 0x0806, 0, false), true},
		{"runt", make([]byte, 10), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ipLengthOK(tt.f); got != tt.ok {
				t.Fatalf("ipLengthOK = %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for c := range NumClasses {
		if c.String() == "" || strings.HasPrefix(c.String(), "class(") {
			t.Errorf("class %d has no name", c)
		}
		if c.Check() >= NumChecks {
			t.Errorf("class %v has no check", c)
		}
	}
	for ch := range NumChecks {
		got, err := ParseCheck(ch.String())
		if err != nil || got != ch {
			t.Errorf("ParseCheck(%q) = %v, %v", ch, got, err)
		}
	}
	for _, p := range []Policy{Drop, Freeze, Panic} {
		if got, err := ParsePolicy(p.String()); err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParseCheck("nope"); err == nil {
		t.Error("ParseCheck accepted nope")
	}
}

// unitCase is one step of the chunk state machine, legal or not, on a unit
// (two sockets, no engine): the dispositions the checks give the faulty
// step, and the one violation expected (noClass: none).
// TestTxMetadataChecks: on a UMEM with a TX metadata area, a TX frame
// may carry XDP_TX_METADATA with a request the kernel takes, needs the
// area's room before it in its chunk, and is refused what the kernel
// would refuse (unknown flags, a checksum beyond the frame: EINVAL, the
// descriptor left on TX); without the area, any option is refused.
func TestTxMetadataChecks(t *testing.T) {
	const O, I = engine.Outer, engine.Inner
	// received returns a frame of chunk 1 received on outer.
	received := func(x *unit) xsk.Desc {
		x.fill(O, 1)
		d := x.frame(O, 1, 100)
		x.recv(O, d)
		return d
	}
	// txMeta sends that frame on inner asking for its TCP checksum from
	// byte start, with flag added to the metadata's flags.
	txMeta := func(x *unit, start uint16, flag byte) []engine.Disposition {
		d := received(x)
		x.umem.SetTxChecksum(d.Addr, start, 16)
		x.area[d.Addr-xsk.TxMetadataLen] |= flag
		d.Options = xsk.OptTxMetadata
		return x.tx(I, d)
	}
	tests := []unitCase{
		{name: "checksum request", meta: true, cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { return txMeta(x, 34, 0) }},
		{name: "checksum beyond the frame", meta: true, cls: BadOptions, want: []engine.Disposition{Q}, in: "kernel refuses",
			run: func(x *unit) []engine.Disposition { return txMeta(x, 90, 0) }},
		{name: "unknown metadata flag", meta: true, cls: BadOptions, want: []engine.Disposition{Q}, in: "kernel refuses",
			run: func(x *unit) []engine.Disposition { return txMeta(x, 34, 0x80) }},
		{name: "no room for the metadata", meta: true, cls: BadAddr, want: []engine.Disposition{Q}, exp: xsk.TxMetadataLen, got: 8,
			in:  "no room for the UMEM's TX metadata",
			run: func(x *unit) []engine.Disposition { return x.tx(O, xsk.Desc{Addr: base(1) + 8, Len: 60}) }},
		{name: "stale descriptor at the FILL head, its record overwritten", meta: true, cls: BadMeta, want: []engine.Disposition{Q},
			run: func(x *unit) []engine.Disposition {
				d := received(x)
				x.umem.SetTxChecksum(d.Addr, 34, 16) // over the record
				d.Options = xsk.OptTxMetadata
				x.tx(I, d)
				x.comp(I, d.Addr)
				x.fill(O, 1) // the kernel has not taken it: the descriptor is last lap's
				d.Options = 0
				return x.recv(O, d)
			}},
		{name: "metadata option without the area", cls: BadOptions, want: []engine.Disposition{Q}, in: "without TX metadata",
			run: func(x *unit) []engine.Disposition {
				d := received(x)
				d.Options = xsk.OptTxMetadata
				return x.tx(I, d)
			}},
	}
	runUnitCases(t, tests)
}

type unitCase struct {
	name string
	run  func(x *unit) []engine.Disposition // the dispositions of the faulty step
	want []engine.Disposition
	cls  Class // noClass: no violation
	exp  uint64
	got  uint64
	in   string // substring of the detail
	meta bool   // a UMEM with a TX metadata area
}

// runUnitCases runs each case on a fresh unit: the dispositions must be
// the wanted ones, and exactly the expected violation reported and counted.
func runUnitCases(t *testing.T, tests []unitCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newUnitMeta(t, DefaultConfig(), 2, tt.meta)
			got := tt.run(x)
			if len(got) != len(tt.want) {
				t.Fatalf("dispositions %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("dispositions %v, want %v", got, tt.want)
				}
			}
			vs := x.checks.Violations()
			if tt.cls == noClass {
				if len(vs) != 0 {
					t.Fatalf("unexpected violations: %v", vs)
				}
				return
			}
			if len(vs) != 1 {
				t.Fatalf("got %d violations, want 1: %v", len(vs), vs)
			}
			v := vs[0]
			if v.Class != tt.cls {
				t.Fatalf("class %v, want %v: %v", v.Class, tt.cls, v)
			}
			if tt.exp != 0 && v.Expected != tt.exp || tt.got != 0 && v.Got != tt.got {
				t.Errorf("expected/got %#x/%#x, want %#x/%#x: %v", v.Expected, v.Got, tt.exp, tt.got, v)
			}
			if !strings.Contains(v.Detail, tt.in) {
				t.Errorf("detail %q does not mention %q", v.Detail, tt.in)
			}
			if n := x.checks.Counts()[tt.cls]; n != 1 {
				t.Errorf("count %d, want 1", n)
			}
			if s := v.String(); !strings.HasPrefix(s, tt.cls.String()+": worker 0 ") || strings.Contains(s, "\n") {
				t.Errorf("String() = %q", s)
			}
		})
	}
}

// TestLastFrameAfterTxMetadata: the evidence of an address-only entry
// (COMPLETION, FILL) is the frame last received into the chunk, found
// from where the checker saw it arrive: a checksum request written over
// the record in front of it since does not lose it. A chunk back in FILL
// has none (the kernel may be writing it).
func TestLastFrameAfterTxMetadata(t *testing.T) {
	const O, I = engine.Outer, engine.Inner
	x := newUnitMeta(t, DefaultConfig(), 2, true)
	k := x.k.(*Checker)
	x.fill(O, 1)
	d := x.frame(O, 1, 100)
	want := slices.Clone(x.area[d.Addr : d.Addr+100])
	x.recv(O, d)
	x.umem.SetTxChecksum(d.Addr, 34, 16) // over the record
	d.Options = xsk.OptTxMetadata
	x.tx(I, d)
	if got := k.lastFrame(base(1)); !bytes.Equal(got, want) {
		t.Fatalf("evidence %x, want the frame received %x", got, want)
	}
	x.comp(I, d.Addr)
	x.fill(O, 1)
	if got := k.lastFrame(base(1)); got != nil {
		t.Fatalf("evidence %x for a chunk in FILL", got)
	}
}
