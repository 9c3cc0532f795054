package replay

import (
	"context"
	"testing"

	"github.com/xskgate/xskgate/internal/integrity"
)

// TestReplay: each fault is detected, the run replays identically from its
// seed, and with no fault nothing is reported.
func TestReplay(t *testing.T) {
	for _, fault := range Faults {
		t.Run(fault, func(t *testing.T) {
			s := Scenario{Fault: fault, Rate: 0.001, Limit: 3, Seed: 7, Frames: 20000, Poison: true}
			r1, err := Run(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !r1.Accounting.Balanced() {
				t.Fatalf("accounting %+v", r1.Accounting)
			}
			if fault == "none" {
				if len(r1.Counts) != 0 || len(r1.Injected) != 0 || r1.Duplicates != 0 || r1.Delivered+r1.KernelDrops != r1.Sent {
					t.Fatalf("clean run: %+v", r1)
				}
				return
			}
			if len(r1.Injected) == 0 {
				t.Fatalf("no fault injected in %d frames", r1.Sent)
			}
			if len(r1.Violations) == 0 {
				t.Fatalf("%d injections, no violation", len(r1.Injected))
			}
			r2, err := Run(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			// The same frames and ring slots are hit and detected the same
			// way; which UMEM frame was in FILL then depends on goroutine
			// timing (the free list's order), so addresses may differ. A
			// veth race drawn for a frame alone in its poll happens at the
			// next frame that has a successor (kmodel.Injection.Drawn), so
			// its frame and slot follow the polls: the seed fixes the draw,
			// and the race is caught where it landed, in both runs.
			a, b := r1.Injected[0], r2.Injected[0]
			va, vb := r1.Violations[0], r2.Violations[0]
			same := a.Kind == b.Kind && a.Drawn == b.Drawn && a.Len == b.Len &&
				sameClass(fault, va.Class) == sameClass(fault, vb.Class) && va.Slot-a.Slot == vb.Slot-b.Slot
			if fault != "veth-race" {
				same = same && a.N == b.N && a.Slot == b.Slot && va.Slot == vb.Slot
			}
			if !same {
				t.Fatalf("replay differs:\n%+v %v\n%+v %v", a, va, b, vb)
			}
		})
	}
}

// sameClass maps the classes one fault may be reported as, depending on
// goroutine timing, to one. A skipped FILL entry makes RX name the chunk
// behind it (out_of_order); when that chunk's descriptor happens to equal
// what the same RX slot held a lap before, which depends on the free
// list's order, it cannot be told from a stale descriptor (stale_desc).
// Either way it is caught at the same slot.
func sameClass(fault string, c integrity.Class) integrity.Class {
	if fault == "skip-fill" && c == integrity.StaleDesc {
		return integrity.OutOfOrder
	}
	return c
}
