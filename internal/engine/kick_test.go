package engine

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// kickRig is one worker on two kernel-model ports whose softirq does not
// run: the test calls the worker's stages itself, one at a time.
type kickRig struct {
	e            *Engine
	w            *Worker
	outer, inner *kmodel.Port
}

func newKickRig(t *testing.T, batch int, budget, compSize uint32) *kickRig {
	t.Helper()
	const fs, frames = 4096, 4096
	area := make([]byte, frames*fs)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: fs, NumFrames: frames})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string) *kmodel.Port {
		p, err := kmodel.NewPort(kmodel.Config{Umem: area, FrameSize: fs, Ifname: name,
			FillSize: 1024, CompSize: compSize, RxSize: 1024, TxSize: 1024, TxBudget: budget})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	r := &kickRig{outer: mk("outer"), inner: mk("inner")}
	if r.e, err = New(u, []Pair{{Outer: r.outer, Inner: r.inner}}, Config{Batch: batch, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	r.w = r.e.workers[0]
	return r
}

// queue puts n frames of the free list on side's TX queue, as receive
// does for frames to forward.
func (r *kickRig) queue(s Side, n int) {
	p := &r.w.ports[s]
	for range n {
		a := r.w.free[len(r.w.free)-1]
		r.w.free = r.w.free[:len(r.w.free)-1]
		p.txq = append(p.txq, xsk.Desc{Addr: a + r.e.umem.RxOffset(), Len: 60})
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// TestKickDrainsBurst: a burst larger than the kernel's per-sendto budget
// leaves TX in one transmit call: the worker kicks again after every EAGAIN
// that moved descriptors. Kicks per TX batch are ceil(batch/budget), of
// which all but the last say EAGAIN (budget spent, more waiting); the
// completions of every batch come back in one complete call.
func TestKickDrainsBurst(t *testing.T) {
	for _, tt := range []struct {
		batch, burst int
		budget       uint32
	}{
		{batch: 64, burst: 200, budget: 32}, // TX batches of 64, 64, 64, 8
		{batch: 64, burst: 200, budget: 16},
		{batch: 256, burst: 200, budget: 16}, // one TX batch of 200
		{batch: 64, burst: 64, budget: 64},   // the budget exactly: one kick, no EAGAIN
		{batch: 64, burst: 300, budget: 7},   // budget not dividing the batch
	} {
		t.Run(fmt.Sprintf("batch%d/burst%d/budget%d", tt.batch, tt.burst, tt.budget), func(t *testing.T) {
			r := newKickRig(t, tt.batch, tt.budget, 1024)
			r.queue(Inner, tt.burst)
			p := &r.w.ports[Inner]
			moved, err := r.w.transmit(p)
			if err != nil || moved != tt.burst {
				t.Fatalf("transmit moved %d, %v; want %d", moved, err, tt.burst)
			}
			var kicks, again int
			for off := 0; off < tt.burst; off += tt.batch {
				k := ceilDiv(min(tt.batch, tt.burst-off), int(tt.budget))
				kicks += k
				again += k - 1
			}
			st := &r.w.Stats[Inner]
			if out := p.tx.Outstanding(); out != 0 {
				t.Errorf("%d descriptors left on TX", out)
			}
			if got := r.inner.Counters().TxFrames; got != uint64(tt.burst) {
				t.Errorf("kernel sent %d frames, want %d", got, tt.burst)
			}
			if st.Kicks.Load() != uint64(kicks) || st.KickAgain.Load() != uint64(again) || st.KickStalled.Load() != 0 {
				t.Errorf("kicks %d (EAGAIN %d, stalled %d), want %d (EAGAIN %d, stalled 0)",
					st.Kicks.Load(), st.KickAgain.Load(), st.KickStalled.Load(), kicks, again)
			}
			n, err := r.w.complete(p)
			if err != nil || n != tt.burst {
				t.Fatalf("complete took %d, %v; want %d", n, err, tt.burst)
			}
			if got, want := st.CompBatches.Load(), uint64(ceilDiv(tt.burst, tt.batch)); got != want {
				t.Errorf("%d completion batches, want %d", got, want)
			}
			r.w.publish()
			if a := r.w.Accounting(); !a.Balanced() || a.Tx != 0 || a.Free != a.Total {
				t.Errorf("accounting %+v", a)
			}
		})
	}
}

// TestKickStopsWithoutProgress: when COMPLETION is full the kernel takes
// nothing more and says EAGAIN; the worker stops at that kick instead of
// spinning, and goes on once completions are collected.
func TestKickStopsWithoutProgress(t *testing.T) {
	const budget, comp, burst = 16, 32, 100
	r := newKickRig(t, 128, budget, comp)
	r.queue(Inner, burst)
	p := &r.w.ports[Inner]
	st := &r.w.Stats[Inner]
	if _, err := r.w.transmit(p); err != nil {
		t.Fatal(err)
	}
	// 16 and 16 sent (EAGAIN, progress), then COMPLETION is full: EAGAIN
	// with nothing moved.
	if st.Kicks.Load() != 3 || st.KickAgain.Load() != 3 || st.KickStalled.Load() != 1 || r.inner.Counters().TxFrames != comp {
		t.Fatalf("kicks %d, EAGAIN %d, stalled %d, sent %d; want 3, 3, 1, %d",
			st.Kicks.Load(), st.KickAgain.Load(), st.KickStalled.Load(), r.inner.Counters().TxFrames, comp)
	}
	// Each round collects a full COMPLETION and drains as far as it
	// allows again; four rounds finish the burst.
	for round := 0; p.tx.Outstanding() > 0; round++ {
		if round == 10 {
			t.Fatalf("TX not drained after %d rounds: %d left", round, p.tx.Outstanding())
		}
		if _, err := r.w.complete(p); err != nil {
			t.Fatal(err)
		}
		if _, err := r.w.transmit(p); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.w.complete(p); err != nil || r.inner.Counters().TxFrames != burst {
		t.Fatalf("complete %d, %v; sent %d of %d", n, err, r.inner.Counters().TxFrames, burst)
	}
	r.w.publish()
	if a := r.w.Accounting(); !a.Balanced() || a.Tx != 0 {
		t.Errorf("accounting %+v", a)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestKickRetry: one iteration of the worker forwards a received burst
// larger than the kernel's per-sendto budget completely: the kick is
// retried after every EAGAIN that moved descriptors (the model returns
// EAGAIN once each budget is spent, as copy mode does), so nothing waits
// on TX for the next iteration or a poll(2) timeout, and the next
// iteration takes all its completions back.
func TestKickRetry(t *testing.T) {
	const batch, burst, budget = 256, 200, 16
	r := newKickRig(t, batch, budget, 1024)
	r.e.Prime()
	buf := make([]byte, 2048)
	tr := kmodel.Traffic{Seed: 1}
	for i := range burst {
		if !r.outer.Deliver(tr.Frame(buf, uint64(i))) {
			t.Fatalf("frame %d refused", i)
		}
	}
	for r.outer.Poll() > 0 {
	}
	if _, err := r.w.iterate(true); err != nil {
		t.Fatal(err)
	}
	st := &r.w.Stats[Inner]
	p := &r.w.ports[Inner]
	if got := r.inner.Counters().TxFrames; got != burst || p.tx.Outstanding() != 0 {
		t.Fatalf("one iteration sent %d of %d frames, %d left on TX", got, burst, p.tx.Outstanding())
	}
	if want := uint64(ceilDiv(burst, budget)); st.Kicks.Load() != want || st.KickAgain.Load() != want-1 || st.KickStalled.Load() != 0 {
		t.Fatalf("kicks %d (EAGAIN %d, stalled %d), want %d (EAGAIN %d, stalled 0)",
			st.Kicks.Load(), st.KickAgain.Load(), st.KickStalled.Load(), want, want-1)
	}
	if _, err := r.w.iterate(true); err != nil {
		t.Fatal(err)
	}
	if got := st.Completed.Load(); got != burst || st.CompBatches.Load() != uint64(ceilDiv(burst, batch)) {
		t.Fatalf("next iteration completed %d of %d in %d batches", got, burst, st.CompBatches.Load())
	}
	if a := r.w.Accounting(); !a.Balanced() || a.Tx != 0 {
		t.Fatalf("accounting %+v", a)
	}
}

// TestSleepSkipsDownLink: frames left on TX by a deferred kick when the
// link goes down are not kicked by sleep: the kernel refuses (ENETDOWN)
// every time, which is the link state, not a kick error.
func TestSleepSkipsDownLink(t *testing.T) {
	r := newKickRig(t, 64, 64, 1024)
	p := &r.w.ports[Inner]
	r.w.deferKick = true
	r.queue(Inner, 8) // fewer than kickAt: transmit leaves them for a later kick
	if moved, err := r.w.transmit(p); err != nil || moved != 8 || p.tx.Outstanding() != 8 {
		t.Fatalf("transmit moved %d, %v; %d on TX, want 8 left unkicked", moved, err, p.tx.Outstanding())
	}
	r.inner.Close() // its Kick now says ENETDOWN
	r.e.SetLinkDown(Inner, true)
	r.w.sleep()
	st := &r.w.Stats[Inner]
	if st.Kicks.Load() != 0 || st.KickErrors.Load() != 0 {
		t.Fatalf("sleep on a down link: %d kicks, %d kick errors; want none", st.Kicks.Load(), st.KickErrors.Load())
	}
}
