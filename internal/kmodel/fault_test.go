package kmodel

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/xskgate/xskgate/internal/xsk"
)

// runFaulty drives the rig synchronously until the first violation (or 400
// rounds) and returns it with the log of the port that injected.
func runFaulty(t *testing.T, c rigConfig, onB bool) (*rig, []Injection) {
	t.Helper()
	r := newRig(t, c)
	for round := 0; round < 400 && r.v == nil; round++ {
		r.step(r.batch(32))
	}
	p := r.a
	if onB {
		p = r.b
	}
	return r, p.Injected()
}

// TestFaultsDetected injects each kind with a seed and checks that the
// user side catches it at the very descriptor the log names, with the
// symptom expected, and that the seed replays the identical log.
func TestFaultsDetected(t *testing.T) {
	for _, tc := range []struct {
		kind   FaultKind
		faults Faults
		poison bool
		ring   xsk.Kind
		what   []string // acceptable symptoms
	}{
		{VethRace, Faults{VethRace: 0.02}, false, xsk.KindRx, []string{"not the next FILL entry"}},
		{VethRace, Faults{VethRace: 0.02}, true, xsk.KindRx, []string{"not the next FILL entry"}},
		{Duplicate, Faults{Duplicate: 0.02}, false, xsk.KindRx, []string{"chunk not in FILL"}},
		{Drop, Faults{Drop: 0.02}, false, xsk.KindRx, []string{"not the next FILL entry"}},
		{WrongLength, Faults{WrongLength: 0.02}, false, xsk.KindRx, []string{"metadata length differs"}},
		{BadAddr, Faults{BadAddr: 0.02}, false, xsk.KindRx, []string{"address beyond the UMEM", "address not at chunk+headroom+256"}},
		{SkipFill, Faults{SkipFill: 0.02}, false, xsk.KindRx, []string{"not the next FILL entry"}},
		{SpuriousCompletion, Faults{SpuriousCompletion: 0.02}, true, xsk.KindComp, []string{"completion of a chunk not on TX"}},
	} {
		for _, seed := range []uint64{11, 12, 13} {
			t.Run(fmt.Sprintf("%s/poison=%v/seed%d", tc.kind, tc.poison, seed), func(t *testing.T) {
				f := tc.faults
				f.Seed = seed
				c := rigConfig{
					chunks: 512, ringSize: 64, seed: seed, poison: tc.poison, record: true,
					headroom: 64, traffic: Traffic{Seed: seed, MinLen: 60, MaxLen: 1500},
				}
				onB := tc.kind == SpuriousCompletion
				if onB {
					c.faultsB = f
				} else {
					c.faultsA = f
				}
				r, log := runFaulty(t, c, onB)
				if len(log) == 0 || r.v == nil {
					t.Fatalf("log %v, violation %v", log, r.v)
				}
				first := log[0]
				if first.Kind != tc.kind {
					t.Fatalf("first injection %+v", first)
				}
				if r.v.ring != tc.ring || r.v.idx != first.Slot {
					t.Fatalf("caught %v, injected %+v", r.v, first)
				}
				found := false
				for _, w := range tc.what {
					found = found || r.v.what == w
				}
				if !found {
					t.Fatalf("symptom %q, want one of %q", r.v.what, tc.what)
				}
				t.Logf("injected %+v; caught %v", first, r.v)
				checkInjection(t, r, first)

				// The same seed replays the identical log.
				_, again := runFaulty(t, c, onB)
				if !reflect.DeepEqual(log, again) {
					t.Fatalf("replay differs:\n%+v\n%+v", log, again)
				}
			})
		}
	}
}

// checkInjection checks what the log says against what user space saw.
func checkInjection(t *testing.T, r *rig, in Injection) {
	t.Helper()
	fs := r.st.fs
	switch in.Kind {
	case VethRace:
		// Slot s holds F2 where F1 (leaked) was due; s+1 was published
		// unwritten: all-zero on the ring's first lap, Poison or the
		// previous lap's descriptor afterwards.
		if r.v.want != in.Fill&^(fs-1) || r.v.got.Addr != in.Addr {
			t.Errorf("race: want F1 %#x got %#x; violation %v", in.Fill, in.Addr, r.v)
		}
		if int(in.Slot+1) < len(r.rxSeen) {
			stale := r.rxSeen[in.Slot+1]
			lap := in.Slot+1 >= 64
			switch {
			case !lap && stale != (xsk.Desc{}):
				t.Errorf("first-lap stale slot %+v, want all-zero", stale)
			case lap && r.rxA != nil && stale.Addr != xsk.Poison && stale != r.rxSeen[in.Slot+1-64]:
				t.Errorf("stale slot %+v is neither poison nor the previous lap's", stale)
			}
		}
	case Duplicate:
		if r.rxSeen[in.Slot] != r.rxSeen[in.Slot-1] || r.rxSeen[in.Slot].Addr != in.Addr {
			t.Errorf("duplicate slots %+v %+v", r.rxSeen[in.Slot-1], r.rxSeen[in.Slot])
		}
	case Drop, SkipFill:
		if r.v.want != in.Fill&^(fs-1) {
			t.Errorf("leaked %#x, checker expected %#x", in.Fill, r.v.want)
		}
	case WrongLength:
		if r.v.got.Len != in.Len {
			t.Errorf("len %d, logged %d", r.v.got.Len, in.Len)
		}
	case BadAddr:
		if r.v.got.Addr != in.Addr {
			t.Errorf("addr %#x, logged %#x", r.v.got.Addr, in.Addr)
		}
	case SpuriousCompletion:
		if r.v.got.Addr != in.Addr {
			t.Errorf("comp %#x, logged %#x", r.v.got.Addr, in.Addr)
		}
	}
}

// TestFaultDecisionsIndependentOfTiming: which frames a seed hits depends on
// the frame number only, not on how frames were batched into polls.
func TestFaultDecisionsIndependentOfTiming(t *testing.T) {
	run := func(perPoll int) []uint64 {
		p, _ := newTestPort(t, func(c *Config) {
			c.Umem = make([]byte, 4096*testFS)
			c.FillSize, c.RxSize = 4096, 4096
			c.Faults = Faults{Seed: 77, WrongLength: 0.05, BadAddr: 0.05}
		})
		var addrs []uint64
		for i := range 4000 {
			addrs = append(addrs, uint64(i)*testFS)
		}
		putFill(t, p, addrs...)
		src := NewSource(Traffic{Seed: 1})
		for sent := 0; sent < 2000; sent += perPoll {
			src.Send(p, perPoll)
			for p.Poll() > 0 {
			}
		}
		var ns []uint64
		for _, in := range p.Injected() {
			ns = append(ns, in.N)
		}
		return ns
	}
	a, b := run(1), run(50)
	if len(a) < 50 || !reflect.DeepEqual(a, b) {
		t.Fatalf("frames hit differ: %d vs %d", len(a), len(b))
	}
}

func TestFaultLimit(t *testing.T) {
	r := newRig(t, rigConfig{chunks: 512, ringSize: 64, faultsA: Faults{Seed: 1, Duplicate: 0.5, Limit: 3}, traffic: Traffic{Seed: 1}})
	for range 20 {
		r.step(16)
	}
	if n := len(r.a.Injected()); n != 3 {
		t.Fatalf("%d injections, want 3", n)
	}
}

// TestFaultsNeverPanic runs every kind at once, at high rates, with a user
// that ignores what it sees and recycles whatever addresses come back.
func TestFaultsNeverPanic(t *testing.T) {
	umem := make([]byte, 128*testFS)
	f := Faults{Seed: 9, VethRace: 0.1, Duplicate: 0.1, Drop: 0.1, WrongLength: 0.1, BadAddr: 0.1, SkipFill: 0.1, SpuriousCompletion: 0.2}
	a, _ := NewPort(Config{Umem: umem, FrameSize: testFS, FillSize: 32, RxSize: 32, TxSize: 32, CompSize: 32, Faults: f})
	b, _ := NewPort(Config{Umem: umem, FrameSize: testFS, FillSize: 32, RxSize: 32, TxSize: 32, CompSize: 32, Faults: f})
	Wire(a, b)
	src := NewSource(Traffic{Seed: 2, MaxLen: 2000})
	fill, comp, rx, tx := a.Rings()
	bfill, _, _, _ := b.Rings()
	descs := make([]xsk.Desc, 32)
	addrs := make([]uint64, 32)
	next := uint64(0)
	for range 2000 {
		for i := range addrs {
			addrs[i] = next % uint64(len(umem)+3*testFS) // some beyond the UMEM
			next += testFS + 1
		}
		fill.Put(addrs[:8])
		bfill.Put(addrs[8:16])
		src.Send(a, 8)
		a.Poll()
		n, _ := rx.Get(descs)
		tx.Put(descs[:n])
		a.Kick()
		b.Poll()
		comp.Get(addrs)
	}
	if len(a.Injected()) == 0 {
		t.Fatal("nothing injected")
	}
}
