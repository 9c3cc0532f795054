package engine

import (
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/xsk"
)

// Stages 1 and 4 of an iteration: COMPLETION back to the free list, and
// the TX queues onto the TX rings with the kicks that drain them.

// complete takes finished transmissions back into the free list, batch
// after batch while COMPLETION has more (a kick drains TX, which may
// complete several batches at once), at most a ring's worth.
func (w *Worker) complete(p *port) (int, error) {
	total := 0
	for limit := int(p.comp.Size()); total < limit; {
		n, err := w.completeBatch(p)
		total += n
		if err != nil || n < len(w.addrs) {
			return total, err
		}
	}
	return total, nil
}

// completeBatch takes one batch off COMPLETION.
func (w *Worker) completeBatch(p *port) (int, error) {
	n, err := p.comp.Get(w.addrs)
	if err != nil || n == 0 {
		return 0, err
	}
	addrs := w.addrs[:n]
	disp := w.disp[:n]
	clear(disp)
	nbad := 0
	if w.check != nil {
		nbad = w.check.Completed(p.side, addrs, disp)
	}
	umem := w.e.umem
	for i, a := range addrs {
		base, _ := umem.Chunk(a)
		if nbad > 0 && disp[i] == Free && w.owns(base) {
			w.free = append(w.free, base)
			p.stats.Drops[DropViolation].Add(1)
			continue
		}
		if nbad > 0 && disp[i] != Keep || !w.owns(base) {
			// Not a frame this worker sent, or one the checker distrusts:
			// it may be live elsewhere, so it never goes back to FILL.
			w.quar++
			p.stats.Drops[DropViolation].Add(1)
			continue
		}
		w.free = append(w.free, base)
	}
	p.txOut -= n
	p.stats.Completed.Add(uint64(n))
	p.stats.CompBatches.Add(1)
	return n, nil
}

// transmit puts the queued frames on TX and kicks the kernel until the ring
// is drained or it says "later".
func (w *Worker) transmit(p *port) (int, error) {
	if w.e.down[p.side].Load() {
		// Link down: nothing goes on its TX (and kick would not kick it).
		if len(p.txq) > 0 {
			w.dropTx(p, p.txq, DropLinkDown)
			p.txq = p.txq[:0]
		}
		return 0, nil
	}
	moved := 0
	kicked := false // whether what is on TX was kicked since it was put there
	q := p.txq
	for off := 0; off < len(q); {
		chunk := q[off:min(len(q), off+w.batch)]
		off += len(chunk)
		if w.check != nil {
			disp := w.disp[:len(chunk)]
			clear(disp)
			w.check.PostTx(p.side, chunk, disp)
			chunk = chunk[:keepOnly(w, p, chunk, disp)]
		}
		idx, n, err := p.tx.Reserve(uint32(len(chunk)))
		if err != nil {
			return moved, err
		}
		var bytes uint64
		for i := uint32(0); i < n; i++ {
			*p.tx.Slot(idx + i) = chunk[i]
			bytes += uint64(chunk[i].Len)
		}
		p.tx.Submit()
		kicked = n == 0 && kicked
		p.txOut += int(n)
		p.stats.TxPackets.Add(uint64(n))
		p.stats.TxBytes.Add(bytes)
		moved += int(n)
		if w.inject > 0 && n > 0 {
			w.injectFillWhileTx(p, chunk[n-1])
		}
		if int(n) < len(chunk) {
			// No room: the kernel is behind. Dropping here bounds the
			// queue; the sender's congestion control sees it as loss.
			w.dropTx(p, chunk[n:], DropTxRingFull)
			w.dropTx(p, q[off:], DropTxRingFull)
			break
		}
		if w.deferKick && p.tx.Outstanding() < w.kickAt(p) {
			continue
		}
		w.kick(p)
		kicked = true
	}
	p.txq = p.txq[:0]
	if !kicked && !w.deferKick && p.tx.Outstanding() > 0 {
		w.kick(p)
	}
	return moved, nil
}

// kickIdle is how many loops in a row without RX end a deferred kick.
const kickIdle = 8

// kickAt is how many frames on TX are worth a deferred kick: what one
// sendto moves, at most a batch.
func (w *Worker) kickAt(p *port) uint32 {
	return min(p.TxBatch(), uint32(w.batch))
}

func (w *Worker) dropTx(p *port, descs []xsk.Desc, why DropReason) {
	for _, d := range descs {
		base, _ := w.e.umem.Chunk(d.Addr)
		w.free = append(w.free, base)
	}
	p.stats.Drops[why].Add(uint64(len(descs)))
}

// kick wakes the kernel's TX until the ring is drained. In copy mode each
// sendto moves at most TxBatch descriptors and says EAGAIN while more wait,
// so EAGAIN alone is no reason to stop: kick again as long as the kernel's
// consumer index advances, and stop at the first kick that moved nothing
// (COMPLETION full, the device busy, or a zero-copy driver that transmits
// later from its NAPI): the rest waits for the next iteration. A port whose
// link is down is not kicked: the sendto would fail every time and count a
// kick error for what is only the link state (DropLinkDown says that).
func (w *Worker) kick(p *port) {
	if w.e.down[p.side].Load() || !p.tx.NeedWakeup() {
		return
	}
	for out := p.tx.Outstanding(); out > 0; {
		p.stats.Kicks.Add(1)
		switch e := p.Kick(); e {
		case 0:
		case unix.EAGAIN:
			p.stats.KickAgain.Add(1)
		case unix.EBUSY:
			p.stats.KickBusy.Add(1)
		default:
			p.stats.KickErrors.Add(1)
			return
		}
		left := p.tx.Outstanding()
		if left >= out {
			p.stats.KickStalled.Add(1)
			return
		}
		out = left
	}
}
