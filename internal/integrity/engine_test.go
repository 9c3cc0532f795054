package integrity

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// TestNoFault forwards randomised traffic through the engine with every
// check on: no violation, every frame delivered once, frames accounted for.
func TestNoFault(t *testing.T) {
	frames := 100_000
	if testing.Short() {
		frames = 20_000
	}
	for _, seed := range []uint64{1, 2, 3, 4} {
		o := gateOpts{
			queues: 1 + int(seed%2), headroom: uint32(seed%2) * 128, poison: seed%2 == 0,
			batch:   []int{64, 16, 32, 64}[seed%4],
			traffic: kmodel.Traffic{Seed: seed, MinLen: 60, MaxLen: 1500},
		}
		t.Run(fmt.Sprintf("seed%d/q%d/b%d", seed, o.queues, o.batch), func(t *testing.T) {
			g := newGate(t, o)
			g.send(t, frames)
			g.settleAll(t, uint64(frames))
			g.stop(t)
			if vs := g.checks.Violations(); len(vs) > 0 {
				t.Fatalf("%d violations, first: %v", len(vs), vs[0])
			}
			if c := g.checks.Counts(); c != ([NumClasses]uint64{}) {
				t.Fatalf("counts %v", c)
			}
			// Every frame delivered exactly once, or dropped by the model's
			// kernel and counted (a burst can still meet an empty FILL).
			st, kd := g.sink.Stats(), g.kernelDrops()
			if st.Unique+kd != uint64(frames) || st.Duplicates != 0 || st.Malformed != 0 {
				t.Fatalf("sink %+v + %d kernel drops, want %d unique", st, kd, frames)
			}
			if a := g.e.Accounting(); !a.Balanced() || a.Quarantined != 0 {
				t.Fatalf("accounting %+v", a)
			}
			if s := g.checks.Stats(); s.Lost != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestTxMetadata: with partial UDP checksums (the neighbours' checksum
// offload) on a UMEM with a TX metadata area, the engine leaves every
// checksum to the kernel, and the checks, with every carrier, see no
// violation: XDP_TX_METADATA is allowed there, every frame has the room
// for it, and the records the metadata overwrites are not needed again.
// Every frame arrives with its checksum complete.
func TestTxMetadata(t *testing.T) {
	const frames = 20_000
	for _, rec := range records {
		t.Run(carrierOf(rec).String(), func(t *testing.T) {
			g := newGate(t, gateOpts{record: rec, txMeta: true, poison: true,
				traffic: kmodel.Traffic{Seed: 9, MinLen: 60, MaxLen: 1500, Partial: true}})
			g.send(t, frames)
			g.settleAll(t, frames)
			g.stop(t)
			if vs := g.checks.Violations(); len(vs) > 0 {
				t.Fatalf("%d violations, first: %v", len(vs), vs[0])
			}
			st, kd := g.sink.Stats(), g.kernelDrops()
			if st.Unique+kd != frames || st.Duplicates != 0 || st.Malformed != 0 {
				t.Fatalf("sink %+v + %d kernel drops, want %d unique, none malformed (%v)", st, kd, frames, g.sink.Err())
			}
			var off uint64
			for _, w := range g.e.Workers() {
				off += w.Stats[engine.Inner].ChecksumsOffloaded.Load()
			}
			if off != st.Unique {
				t.Fatalf("%d checksums left to the kernel, %d frames delivered", off, st.Unique)
			}
		})
	}
}

// TestCarriers forwards fault-free traffic with each way the XDP program
// may hand over its record, including a driver that refuses metadata at
// run time (the program falls back to a record in front of the frame while
// user space expects the metadata area): no violation, every frame
// delivered intact (a record left on a frame makes it malformed at the
// sink), and the fallback counted per frame.
func TestCarriers(t *testing.T) {
	const frames = 5000
	tests := []struct {
		name     string
		record   kmodel.Record
		carrier  xdpprog.Carrier
		fallback bool
	}{
		{"meta", kmodel.RecordMeta, xdpprog.CarrierMeta, false},
		{"head", kmodel.RecordHead, xdpprog.CarrierHead, false},
		{"none", kmodel.RecordNone, xdpprog.CarrierNone, false},
		{"meta refused at run time", kmodel.RecordHead, xdpprog.CarrierMeta, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t, gateOpts{record: tt.record, carrier: tt.carrier, poison: true,
				traffic: kmodel.Traffic{Seed: 11, MinLen: 60, MaxLen: 1500}})
			g.send(t, frames)
			g.settleAll(t, frames)
			g.stop(t)
			if vs := g.checks.Violations(); len(vs) > 0 {
				t.Fatalf("%d violations, first: %v", len(vs), vs[0])
			}
			if st, kd := g.sink.Stats(), g.kernelDrops(); st.Unique+kd != frames || st.Malformed != 0 || st.Duplicates != 0 {
				t.Fatalf("sink %+v + %d kernel drops, want %d unique and intact", st, kd, frames)
			}
			fb := g.e.Workers()[0].Stats[engine.Outer].MetaFallback.Load()
			if want := map[bool]uint64{true: frames - g.kernelDrops()}[tt.fallback]; fb != want {
				t.Fatalf("meta_fallback = %d, want %d", fb, want)
			}
			if a := g.e.Accounting(); !a.Balanced() || a.Quarantined != 0 {
				t.Fatalf("accounting %+v", a)
			}
		})
	}
}

// faultCase is one kmodel fault and what the checks must say first.
type faultCase struct {
	name   string
	outer  kmodel.Faults
	inner  kmodel.Faults
	poison bool
	ring   uint32
	class  Class
	// check compares the first violation with the first injection.
	check func(t *testing.T, g *gate, v Violation, in kmodel.Injection)
}

func rxAt(t *testing.T, v Violation, in kmodel.Injection) {
	t.Helper()
	if v.Ring != xsk.KindRx || v.Slot != in.Slot || v.Addr != in.Addr {
		t.Errorf("violation at %s[%d] addr %#x, injection at slot %d addr %#x", v.Ring, v.Slot, v.Addr, in.Slot, in.Addr)
	}
}

func faultCases() []faultCase {
	const fs = 4096
	one := func(f kmodel.Faults) kmodel.Faults { f.Seed, f.Limit = 7, 1; return f }
	order := func(t *testing.T, g *gate, v Violation, in kmodel.Injection) {
		// The FILL entry lost is the one expected; the frame landed in the
		// next one, at the slot the lost one was due.
		if v.Ring != xsk.KindRx || v.Slot != in.Slot || v.Expected != in.Fill&^(fs-1) || v.Got != v.Addr&^(fs-1) || v.Got == v.Expected {
			t.Errorf("violation %v, injection %+v", v, in)
		}
	}
	return []faultCase{
		{name: "veth-race", outer: one(kmodel.Faults{VethRace: 0.02}), class: OutOfOrder,
			check: func(t *testing.T, g *gate, v Violation, in kmodel.Injection) {
				rxAt(t, v, in)
				if v.Expected != in.Fill&^(fs-1) || v.Got != in.Addr&^(fs-1) {
					t.Errorf("expected/got %#x/%#x, want F1 %#x / F2 %#x", v.Expected, v.Got, in.Fill, in.Addr)
				}
				// Then the slot the race left unwritten: first lap, all zero.
				vs := g.checks.Violations()
				if len(vs) < 2 || vs[1].Class != UninitializedDesc || vs[1].Slot != in.Slot+1 {
					t.Errorf("second violation %v, want uninitialized_desc at slot %d", vs[1:], in.Slot+1)
				}
			}},
		{name: "veth-race-poisoned", outer: one(kmodel.Faults{VethRace: 0.005}), poison: true, ring: 64, class: OutOfOrder,
			check: func(t *testing.T, g *gate, v Violation, in kmodel.Injection) {
				rxAt(t, v, in)
				vs := g.checks.Violations()
				if len(vs) < 2 || vs[1].Class != UnwrittenSlot || vs[1].Slot != in.Slot+1 {
					t.Errorf("second violation %v, want unwritten_slot at slot %d", vs[1:], in.Slot+1)
				}
			}},
		{name: "duplicate", outer: one(kmodel.Faults{Duplicate: 0.02}), class: Duplicate,
			check: func(t *testing.T, g *gate, v Violation, in kmodel.Injection) { rxAt(t, v, in) }},
		{name: "drop", outer: one(kmodel.Faults{Drop: 0.02}), class: OutOfOrder, check: order},
		{name: "skip-fill", outer: one(kmodel.Faults{SkipFill: 0.02}), class: OutOfOrder, check: order},
		{name: "wrong-length", outer: one(kmodel.Faults{WrongLength: 0.02}), class: MetaLenMismatch,
			check: func(t *testing.T, g *gate, v Violation, in kmodel.Injection) {
				rxAt(t, v, in)
				// Got is the frame's length by the descriptor: its length
				// less a record carried in front (head carrier).
				if v.Len != in.Len || (v.Got != uint64(in.Len) && v.Got != uint64(in.Len)-xdpprog.MetaSize) || v.Expected == v.Got {
					t.Errorf("expected/got %d/%d, injected len %d", v.Expected, v.Got, in.Len)
				}
			}},
		{name: "bad-addr", outer: one(kmodel.Faults{BadAddr: 0.02}), class: BadAddr,
			check: func(t *testing.T, g *gate, v Violation, in kmodel.Injection) { rxAt(t, v, in) }},
		{name: "bad-addr-misaligned", outer: kmodel.Faults{Seed: 8, Limit: 1, BadAddr: 0.02}, class: BadAddr,
			check: func(t *testing.T, g *gate, v Violation, in kmodel.Injection) { rxAt(t, v, in) }},
		{name: "spurious-completion", inner: one(kmodel.Faults{SpuriousCompletion: 0.02}), class: CompletionNotSent,
			check: func(t *testing.T, g *gate, v Violation, in kmodel.Injection) {
				if v.Ring != xsk.KindComp || v.Slot != in.Slot || v.Addr != in.Addr || v.Iface != "inner" {
					t.Errorf("violation %v, injection %+v", v, in)
				}
			}},
	}
}

// TestFaults runs every injected fault with the record in the metadata
// area and in front of the frame (the head carrier, whose records the
// engine must strip: the sink counts a frame that kept one as malformed).
func TestFaults(t *testing.T) {
	for _, r := range records[:2] {
		t.Run(carrierOf(r).String(), func(t *testing.T) { testFaults(t, r, false) })
		// The same faults while every frame's checksum is left to the
		// kernel: the TX metadata overwrites the record in front of each
		// sent frame, which a stale descriptor may point at later.
		t.Run(carrierOf(r).String()+"+txmeta", func(t *testing.T) { testFaults(t, r, true) })
	}
}

func testFaults(t *testing.T, r kmodel.Record, txMeta bool) {
	const frames = 3000
	for _, fc := range faultCases() {
		t.Run(fc.name, func(t *testing.T) {
			g := newGate(t, gateOpts{poison: fc.poison, ring: fc.ring, outerFaults: fc.outer, innerFaults: fc.inner,
				traffic: kmodel.Traffic{Seed: 5, MinLen: 60, MaxLen: 1000, Partial: txMeta}, record: r, txMeta: txMeta})
			g.send(t, frames)
			g.settle(t, frames)
			// Forwarding goes on: at most a few frames lost to the fault
			// (checked below, once every other one arrived).
			g.delivered(frames, 3)
			g.stop(t)
			injected := append(g.outer[0].Injected(), g.inner[0].Injected()...)
			if len(injected) != 1 {
				t.Fatalf("%d injections, want 1", len(injected))
			}
			in := injected[0]
			vs := g.checks.Violations()
			if len(vs) == 0 {
				t.Fatalf("injection %+v not detected", in)
			}
			v := vs[0]
			t.Logf("injected %v %+v; first violation %v (%d in all)", in.Kind, in, v, len(vs))
			if v.Class != fc.class {
				t.Fatalf("first violation %v, want class %v", v, fc.class)
			}
			fc.check(t, g, v, in)
			if len(vs) > 2 {
				t.Errorf("one fault gave %d violations: %v", len(vs), vs)
			}
			if err := g.e.Err(); err != nil {
				t.Fatal(err)
			}
			if a := g.e.Accounting(); !a.Balanced() {
				t.Fatalf("accounting %+v", a)
			}
			// Forwarding went on: at most a few frames lost to the fault.
			ks, _ := g.outer[0].Stats()
			if st := g.sink.Stats(); st.Unique+ks.RxDropped+ks.RxRingFull+3 < frames || st.Malformed != 0 {
				t.Fatalf("sink %+v, kernel %+v after %d frames", st, ks, frames)
			}
		})
	}
}

// TestFillWhileTx plants the user bug: a frame on TX also posted to FILL.
func TestFillWhileTx(t *testing.T) {
	const frames = 5000
	g := newGate(t, gateOpts{traffic: kmodel.Traffic{Seed: 3}, ecfg: engine.Config{InjectFillWhileTx: 0.5}})
	g.send(t, frames)
	g.settleAll(t, frames)
	g.stop(t)
	vs := g.checks.Violations()
	if len(vs) == 0 {
		t.Fatal("no violation")
	}
	for _, v := range vs {
		if v.Class != FillWhileTx || v.Ring != xsk.KindFill || !strings.Contains(v.Detail, "on TX of") {
			t.Fatalf("violation %v, want fill_while_tx", v)
		}
	}
	if c := g.checks.Counts(); c[FillWhileTx] != g.checks.nviol {
		t.Fatalf("counts %v", c)
	}
	if a := g.e.Accounting(); !a.Balanced() || a.Quarantined != 0 {
		t.Fatalf("accounting %+v", a)
	}
	// Every frame delivered once, or dropped by the model's kernel and
	// counted (vetoed posts leave FILL short for a moment).
	if st := g.sink.Stats(); st.Unique+g.kernelDrops() != frames || st.Duplicates != 0 {
		ks, _ := g.outer[0].Stats()
		t.Fatalf("sink %+v, outer %+v %+v, %+v", st, ks, g.outer[0].Counters(), g.e.Accounting())
	}
}

// TestEvidence checks the files a violation leaves: the flight recorder
// dump with the frame's history and the pcapng capture with its comment.
func TestEvidence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dumps")
	cfg := DefaultConfig()
	cfg.DumpDir = dir
	g := newGate(t, gateOpts{cfg: &cfg, outerFaults: kmodel.Faults{Seed: 7, Limit: 1, VethRace: 0.02},
		traffic: kmodel.Traffic{Seed: 5}})
	g.send(t, 2000)
	g.settle(t, 2000)
	g.stop(t)
	in := g.outer[0].Injected()[0]
	if p, err := g.checks.DumpNow("operator request"); err != nil || !strings.Contains(p, "operator_request") {
		t.Fatalf("DumpNow = %q, %v", p, err)
	}
	if err := g.checks.Close(); err != nil {
		t.Fatal(err)
	}
	dumps := g.checks.Dumps()
	if len(dumps) != 2 {
		t.Fatalf("dumps %v, want the violation's and the operator's", dumps)
	}
	if len(dumps) == 0 {
		t.Fatal("no dump")
	}
	fi, err := os.Stat(dumps[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("dump mode %v", fi.Mode())
	}
	b, err := os.ReadFile(dumps[0])
	if err != nil {
		t.Fatal(err)
	}
	f2 := fmt.Sprintf("0x%016x", in.Addr&^4095)
	rx := fmt.Sprintf("0x%016x", in.Addr)
	var fillPost, rxRecv, viol bool
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, " FillPost ") && strings.Contains(line, f2):
			fillPost = true
		case strings.Contains(line, " RxRecv ") && strings.Contains(line, rx):
			rxRecv = true
		case strings.Contains(line, " Violation ") && strings.Contains(line, rx) && strings.Contains(line, "out_of_order"):
			viol = true
		}
	}
	if !fillPost || !rxRecv || !viol {
		t.Fatalf("dump lacks the frame's history (FillPost %v RxRecv %v Violation %v):\n%s", fillPost, rxRecv, viol, tail(string(b), 30))
	}

	path := g.checks.CapturePath()
	if path == "" {
		t.Fatal("no capture")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("capture %v %v", fi, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(bufio.NewReader(f), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	data, _, opts, err := r.ReadPacketDataWithOptions()
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Comments) != 1 || !strings.Contains(opts.Comments[0], "violation=out_of_order") ||
		!strings.Contains(opts.Comments[0], fmt.Sprintf("addr=%#x", in.Addr)) || !strings.Contains(opts.Comments[0], "xdp_len=") {
		t.Fatalf("comments %q", opts.Comments)
	}
	if len(data) != int(in.Len) {
		t.Fatalf("captured %d bytes, descriptor len %d", len(data), in.Len)
	}
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// TestSwitches turns the check that catches a fault off: nothing reported.
func TestSwitches(t *testing.T) {
	for _, tt := range []struct {
		name   string
		faults kmodel.Faults
		poison bool
		off    []Check
		silent []Class // classes that must not appear
		none   bool    // no violation at all
	}{
		{"drop/order off", kmodel.Faults{Seed: 7, Limit: 1, Drop: 0.02}, false, []Check{CheckOrder}, []Class{OutOfOrder}, true},
		{"skip-fill/order off", kmodel.Faults{Seed: 7, Limit: 1, SkipFill: 0.02}, false, []Check{CheckOrder}, []Class{OutOfOrder}, true},
		{"wrong-length/metadata off", kmodel.Faults{Seed: 7, Limit: 1, WrongLength: 0.02}, false,
			[]Check{CheckMetadata, CheckIPLength}, []Class{MetaLenMismatch, IPLength}, true},
		{"veth-race/poison off", kmodel.Faults{Seed: 7, Limit: 1, VethRace: 0.02}, true, []Check{CheckPoison},
			[]Class{UnwrittenSlot, UninitializedDesc}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			g := newGate(t, gateOpts{cfg: &cfg, poison: tt.poison, outerFaults: tt.faults, traffic: kmodel.Traffic{Seed: 5}})
			for _, c := range tt.off {
				g.checks.SetEnabled(c, false)
				if g.checks.Enabled(c) {
					t.Fatalf("%v still on", c)
				}
			}
			g.send(t, 3000)
			g.settle(t, 3000)
			g.stop(t)
			if len(g.outer[0].Injected()) != 1 {
				t.Fatal("fault not injected")
			}
			counts := g.checks.Counts()
			for _, c := range tt.silent {
				if counts[c] != 0 {
					t.Errorf("%v reported %d times while off", c, counts[c])
				}
			}
			if vs := g.checks.Violations(); tt.none && len(vs) != 0 {
				t.Errorf("violations with the check off: %v", vs)
			}
			if a := g.e.Accounting(); !a.Balanced() {
				t.Fatalf("accounting %+v", a)
			}
		})
	}
}

// TestFreeze blocks the worker on the first violation until Unfreeze.
func TestFreeze(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Policy = Freeze
	g := newGate(t, gateOpts{cfg: &cfg, outerFaults: kmodel.Faults{Seed: 7, Limit: 1, Drop: 0.02}, traffic: kmodel.Traffic{Seed: 5}})
	g.send(t, 200)
	waitUntil(t, "one frozen worker", func() bool { return g.checks.Stats().Frozen == 1 })
	before := g.sink.Stats().Received
	g.checks.Unfreeze()
	g.send(t, 500)
	waitUntil(t, "forwarding resumed", func() bool { return g.sink.Stats().Received >= before+400 })
	if s := g.checks.Stats(); s.Frozen != 0 {
		t.Fatalf("stats %+v after Unfreeze", s)
	}
}

// TestPanicPolicy: the engine turns the checker's panic into a worker error.
func TestPanicPolicy(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Policy = Panic
	g := newGate(t, gateOpts{cfg: &cfg, ecfg: engine.Config{InjectFillWhileTx: 1}, traffic: kmodel.Traffic{Seed: 5}})
	g.send(t, 100)
	waitUntil(t, "the worker stopped by the violation", func() bool { return g.e.Err() != nil })
	g.stopped = true
	err := g.e.Stop(100e6)
	if err == nil || !strings.Contains(err.Error(), "fill_while_tx") {
		t.Fatalf("Stop = %v, want the violation as worker error", err)
	}
}

// waitUntil waits (deadline 10 s) for cond.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}
