package integrity

import (
	"strings"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xsk"
)

func (x *unit) spare(s engine.Side, chunks ...int) []engine.Disposition {
	addrs := make([]uint64, len(chunks))
	for i, c := range chunks {
		addrs[i] = base(c)
	}
	d := x.disp(len(addrs))
	x.k.Spare(s, addrs, d)
	return append([]engine.Disposition(nil), d...)
}

// extra is a frame of the Inspector's own in chunk ci, as engine.Extra
// builds it.
func extra(ci int) xsk.Desc { return xsk.Desc{Addr: base(ci) + unitRxOff, Len: 54} }

// TestStateTransitions: every transition the engine's design uses passes,
// every other one into TX is reported (docs/architecture.md has the
// table). TestTransitions covers the other rings.
func TestStateTransitions(t *testing.T) {
	const O, I = engine.Outer, engine.Inner
	// received takes chunk ci through FILL and RX on side s.
	received := func(x *unit, s engine.Side, ci int) xsk.Desc {
		x.fill(s, ci)
		d := x.frame(s, ci, 60)
		x.recv(s, d)
		return d
	}
	tests := []unitCase{
		{name: "rx to tx (forward)", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { return x.tx(I, received(x, O, 1)) }},
		{name: "rx to tx (bounce)", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { return x.tx(O, received(x, O, 1)) }},
		{name: "rx to fill (drop, recycle)", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { received(x, O, 1); return x.fill(I, 1) }},
		{name: "completed to fill", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { x.cycle(1); return x.fill(I, 1) }},
		{name: "free to spare to tx", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { x.spare(I, 2); return x.tx(I, extra(2)) }},
		{name: "completed to spare to tx", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { x.cycle(1); x.spare(O, 1); return x.tx(O, extra(1)) }},
		{name: "rx to spare (dropped, reused)", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { received(x, O, 1); return x.spare(O, 1) }},
		{name: "spare to fill (link down dropped it)", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition { x.spare(O, 1); return x.fill(O, 1) }},
		{name: "tx ring full back to free, then fill", cls: noClass, want: []engine.Disposition{K},
			run: func(x *unit) []engine.Disposition {
				d := received(x, O, 1)
				x.txPost(I, []xsk.Desc{d}, 0)
				return x.fill(O, 1)
			}},
		{name: "free to tx", cls: TxFree, want: []engine.Disposition{Q}, in: "free (on worker 0's free list)",
			run: func(x *unit) []engine.Disposition { return x.tx(I, extra(3)) }},
		{name: "completed to tx", cls: TxFree, want: []engine.Disposition{Q}, in: "free since it completed on inner",
			run: func(x *unit) []engine.Disposition { x.cycle(1); return x.tx(I, extra(1)) }},
		{name: "tx ring full back to free, then tx", cls: TxFree, want: []engine.Disposition{Q}, in: "free (on",
			run: func(x *unit) []engine.Disposition {
				d := received(x, O, 1)
				x.txPost(I, []xsk.Desc{d}, 0)
				return x.tx(I, d)
			}},
		{name: "spare of a chunk in fill", cls: TxNotOwned, want: []engine.Disposition{Q}, in: "Extra frame while the chunk is in FILL",
			run: func(x *unit) []engine.Disposition { x.fill(O, 1); return x.spare(I, 1) }},
		{name: "spare of a chunk on tx", cls: TxNotOwned, want: []engine.Disposition{Q}, in: "on TX of inner",
			run: func(x *unit) []engine.Disposition { x.tx(I, received(x, O, 1)); return x.spare(I, 1) }},
		{name: "spare of a foreign chunk", cls: ForeignFrame, want: []engine.Disposition{Q},
			run: func(x *unit) []engine.Disposition { return x.spare(I, unitFrames-1) }},
		{name: "tx twice", cls: TxNotOwned, want: []engine.Disposition{Q}, in: "on TX of inner",
			run: func(x *unit) []engine.Disposition { d := received(x, O, 1); x.tx(I, d); return x.tx(O, d) }},
	}
	runUnitCases(t, tests)
}

// TestOrderOffKeepsFill is the regression test of the order check switched
// off: a chunk received out of FILL order leaves the FILL set, and the
// entries ahead of it stay there. The old checker marked them lost, and
// each one then arriving was rx_not_in_fill, its frame quarantined.
func TestOrderOffKeepsFill(t *testing.T) {
	const O = engine.Outer
	for _, zc := range []bool{false, true} {
		name := map[bool]string{false: "copy/order off", true: "zero-copy"}[zc]
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ZeroCopy = zc
			x := newUnit(t, cfg, 1)
			if !zc {
				x.checks.SetEnabled(CheckOrder, false)
			}
			x.fill(O, 1, 2, 3, 4)
			// A zero-copy driver recycled 1 and 2 behind 3 and 4.
			d3, d4 := x.frame(O, 3, 60), x.frame(O, 4, 60)
			d1, d2 := x.frame(O, 1, 60), x.frame(O, 2, 60)
			for _, got := range [][]engine.Disposition{x.recv(O, d3, d4), x.recv(O, d1, d2)} {
				if got[0] != K || got[1] != K {
					t.Fatalf("dispositions %v, violations %v", got, x.checks.Violations())
				}
			}
			if vs, s := x.checks.Violations(), x.checks.Stats(); len(vs) != 0 || s.Lost != 0 {
				t.Fatalf("violations %v, stats %+v", vs, s)
			}
			// Every chunk is the worker's again.
			if got := x.fill(O, 1, 2, 3, 4); got[0] != K || got[1] != K || got[2] != K || got[3] != K {
				t.Fatalf("refill %v: %v", got, x.checks.Violations())
			}
		})
	}
}

// TestZeroCopyOrderUnavailable: in zero-copy the order check cannot be
// switched on (reload, xskgate checks), and says why.
func TestZeroCopyOrderUnavailable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ZeroCopy = true
	x := newUnit(t, cfg, 1)
	x.checks.SetEnabled(CheckOrder, true)
	if x.checks.Enabled(CheckOrder) {
		t.Fatal("order check switched on in zero-copy")
	}
	if why := x.checks.Unavailable(CheckOrder); !strings.Contains(why, "zero-copy") {
		t.Fatalf("Unavailable(order) = %q", why)
	}
	for ck := range NumChecks {
		if ck != CheckOrder && (x.checks.Unavailable(ck) != "" || !x.checks.Enabled(ck)) {
			t.Errorf("%v unavailable or off", ck)
		}
	}
	y := newUnit(t, DefaultConfig(), 1)
	if why := y.checks.Unavailable(CheckOrder); why != "" {
		t.Fatalf("copy mode: Unavailable(order) = %q", why)
	}
}

// TestOrderBackOn: entries the kernel skipped while the order check was
// off are passed over without a report once it is back on (they are
// lost: copy mode consumes FILL in order), and the check works again.
func TestOrderBackOn(t *testing.T) {
	const O = engine.Outer
	x := newUnit(t, DefaultConfig(), 1)
	x.checks.SetEnabled(CheckOrder, false)
	x.fill(O, 1, 2, 3)
	x.seq[O]++ // chunk 1's frame, never produced
	x.recv(O, x.frame(O, 2, 60))
	x.checks.SetEnabled(CheckOrder, true)
	x.fill(O, 4, 5, 6)
	if got := x.recv(O, x.frame(O, 3, 60), x.frame(O, 4, 60)); got[0] != K || got[1] != K {
		t.Fatalf("dispositions %v", got)
	}
	if vs, s := x.checks.Violations(), x.checks.Stats(); len(vs) != 0 || s.Lost != 1 {
		t.Fatalf("violations %v, stats %+v: want none, chunk 1 lost", vs, s)
	}
	x.seq[O]++ // chunk 5's frame, never produced
	if got := x.recv(O, x.frame(O, 6, 60)); got[0] != F {
		t.Fatalf("disposition %v", got)
	}
	if vs := x.checks.Violations(); len(vs) != 1 || vs[0].Class != OutOfOrder {
		t.Fatalf("violations %v, want one out_of_order", vs)
	}
}
