package engine

import (
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Stage 3 of an iteration: RX batches, their checks, the record carried
// in front of a frame, partial checksums, the Inspector's verdicts.

// receive takes a batch from RX and queues each frame by its verdict.
func (w *Worker) receive(p *port) (int, error) {
	n, err := p.rx.Get(w.descs)
	if err != nil || n == 0 {
		if err == nil && !p.fillWoken {
			// Nothing came: a zero-copy driver may have run dry just
			// after the last post looked at its flag (wake.go).
			w.wakeFill(p)
		}
		return 0, err
	}
	p.fillOut -= n
	descs := w.descs[:n]
	w.e.umem.Prefetch(descs)
	disp := w.disp[:n]
	clear(disp)
	nbad := 0
	if w.check != nil {
		nbad = w.check.Received(p.side, descs, disp)
	}
	umem := w.e.umem
	fs := uint64(umem.FrameSize())
	pkts := w.pkts[:0]
	var bytes uint64
	var ok bool
	for i, d := range descs {
		if nbad > 0 && disp[i] != Keep {
			p.stats.Drops[DropViolation].Add(1)
			if base, _ := umem.Chunk(d.Addr); disp[i] == Free && w.owns(base) {
				w.free = append(w.free, base)
			} else {
				w.quar++
			}
			continue
		}
		base, _ := umem.Chunk(d.Addr)
		if umem.Frame(d.Addr, d.Len) == nil || d.Len == 0 || !w.owns(base) {
			// The kernel consumed a FILL entry for this slot but the
			// descriptor does not name a frame of ours: withhold the loss.
			w.quar++
			p.stats.Drops[DropInvalidDesc].Add(1)
			continue
		}
		if d, ok = w.strip(p, d, base); !ok {
			w.free = append(w.free, base)
			continue
		}
		// Let the Inspector grow the frame in place up to the chunk end
		// (aligned chunks: the address is base + offset).
		data := umem.Area[d.Addr : d.Addr+uint64(d.Len) : base+fs]
		pkts = append(pkts, Packet{Desc: d, Data: data, Verdict: Forward, Len: d.Len})
		bytes += uint64(d.Len)
	}
	p.stats.RxPackets.Add(uint64(n))
	p.stats.RxBytes.Add(bytes)
	if len(pkts) == 0 {
		return n, nil
	}
	w.partialChecksums(p, pkts)
	w.insp.Inspect(w.id, p.side, pkts)
	other := &w.ports[p.side.Other()]
	var vc [numVerdicts]uint64
	for i := range pkts {
		pk := &pkts[i]
		v := pk.Verdict
		if v >= numVerdicts || (v != Drop && (pk.Len == 0 || int(pk.Len) > cap(pk.Data))) {
			v = Drop // an Inspector bug must not put a bad descriptor on TX
		}
		vc[v]++
		switch v {
		case Forward:
			other.txq = append(other.txq, w.txDesc(other, pk))
		case Bounce:
			p.txq = append(p.txq, w.txDesc(p, pk))
		default:
			base, _ := umem.Chunk(pk.Desc.Addr)
			w.free = append(w.free, base)
			p.stats.Drops[DropVerdict].Add(1)
		}
	}
	for v, c := range vc {
		if c > 0 {
			p.stats.Verdicts[v].Add(c)
		}
	}
	for s, c := range w.offloaded {
		if c > 0 {
			w.ports[s].stats.ChecksumsOffloaded.Add(c)
			w.offloaded[s] = 0
		}
	}
	return n, nil
}

// strip removes the XDP program's record from the front of a received
// frame (CarrierHead, or CarrierMeta's run-time fallback) by moving the
// descriptor: no copy, and the frame can never leave with it. A head
// carrier frame without its record is dropped: its first bytes are not
// known to be the frame's.
func (w *Worker) strip(p *port, d xsk.Desc, base uint64) (xsk.Desc, bool) {
	c := w.e.cfg.Carrier
	if c == xdpprog.CarrierNone {
		return d, true
	}
	_, n, ok := c.Locate(w.e.umem.Area, d.Addr, d.Len, d.Addr-base)
	switch {
	case !ok && c == xdpprog.CarrierHead, ok && n >= d.Len:
		p.stats.Drops[DropNoRecord].Add(1)
		return d, false
	case n > 0 && c != xdpprog.CarrierHead:
		p.stats.MetaFallback.Add(1)
	}
	return xsk.Desc{Addr: d.Addr + uint64(n), Len: d.Len - n, Options: d.Options}, true
}
