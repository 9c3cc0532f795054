package engine

import (
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Stage 2 of an iteration: FILL topped up from the free list; the priming
// before start; the planted FILL-while-on-TX bug; the Checker's vetoes.

// refill tops the FILL ring up to the target from the free list, a batch
// at a time. All the way, not one batch per iteration: while the worker
// runs one iteration, NAPI may take more than a batch from FILL (a TCP
// burst arrives at the kernel's pace, and the worker's own sendto runs the
// receiver's stack in its softirq meanwhile), and a ring topped up by one
// batch per iteration can run dry under a burst while frames wait on the
// free list: the kernel drops what finds FILL empty (rx_dropped), and each
// is a retransmission for TCP.
func (w *Worker) refill(p *port) error {
	start := p.fillOut
	for {
		before := p.fillOut
		if err := w.refillBatch(p); err != nil {
			return err
		}
		if p.fillOut == before || p.fillOut >= w.target {
			break
		}
	}
	if p.fillOut != start {
		// One wakeup for all that was posted, not one per batch: the
		// kernel's need-wakeup flag stays up until its NAPI runs.
		p.fillWoken = false
		w.wakeFill(p)
	}
	return nil
}

// refillBatch posts up to one batch of free frames to FILL.
func (w *Worker) refillBatch(p *port) error {
	want := min(w.target-p.fillOut, len(w.free), w.batch)
	if want <= 0 {
		if len(w.free) == 0 && p.fillOut < w.target {
			p.stats.FillEmpty.Add(1)
		}
		return nil
	}
	// The top of the free stack is what we post.
	cand := w.free[len(w.free)-want:]
	if w.check != nil {
		disp := w.disp[:want]
		clear(disp)
		w.check.PostFill(p.side, cand, disp)
		k := keepOnly(w, p, cand, disp)
		w.free = w.free[:len(w.free)-want+k]
		cand = cand[:k]
	}
	idx, n, err := p.fill.Reserve(uint32(len(cand)))
	if err != nil {
		return err
	}
	clearMeta := w.e.cfg.Carrier == xdpprog.CarrierMeta || w.e.cfg.Carrier == xdpprog.CarrierAuto
	rxOff := w.e.umem.RxOffset()
	for i := uint32(0); i < n; i++ {
		a := cand[len(cand)-1-int(i)]
		if clearMeta {
			// The last frame's record must not pass for the next one's.
			xdpprog.ClearMeta(w.e.umem.Area, a+rxOff)
		}
		*p.fill.Slot(idx + i) = a
	}
	p.fill.Submit()
	w.free = w.free[:len(w.free)-int(n)]
	p.fillOut += int(n)
	return nil
}

// Prime posts every worker's FILL rings before anything can arrive, so the
// first frames after the program is attached find buffers. Call it before
// Start.
func (e *Engine) Prime() {
	for _, w := range e.workers {
		for i := range w.ports {
			if err := w.refill(&w.ports[i]); err != nil {
				break
			}
		}
		w.publish()
	}
}

// injectFillWhileTx is the planted bug of Config.InjectFillWhileTx: post a
// frame that is on p's TX ring to the other port's FILL ring.
func (w *Worker) injectFillWhileTx(p *port, d xsk.Desc) {
	// xorshift: deterministic per worker, no allocation, no lock.
	w.injectRand ^= w.injectRand << 13
	w.injectRand ^= w.injectRand >> 7
	w.injectRand ^= w.injectRand << 17
	if float64(w.injectRand>>11)/(1<<53) >= w.inject {
		return
	}
	o := &w.ports[p.side.Other()]
	base, _ := w.e.umem.Chunk(d.Addr)
	addr := [1]uint64{base}
	if w.check != nil {
		disp := w.disp[:1]
		clear(disp)
		if w.check.PostFill(o.side, addr[:], disp) > 0 {
			// Caught before the hand-over: the frame stays on TX only.
			return
		}
	}
	idx, n, err := o.fill.Reserve(1)
	if err != nil || n == 0 {
		return
	}
	*o.fill.Slot(idx) = base
	o.fill.Submit()
	o.fillOut++ // the accounting now counts this frame twice: the bug
}

// keepOnly compacts the entries the Checker kept to the front of v and
// returns how many there are. Vetoed frames are quarantined, never posted:
// a frame refused on its way into a ring is already suspect.
func keepOnly[T any](w *Worker, p *port, v []T, disp []Disposition) int {
	k := 0
	for i := range v {
		if disp[i] == Keep {
			v[k] = v[i]
			k++
			continue
		}
		w.quar++
		p.stats.Drops[DropViolation].Add(1)
	}
	return k
}
