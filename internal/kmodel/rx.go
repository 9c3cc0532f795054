package kmodel

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/xskgate/xskgate/internal/xsk"
)

// Poll runs one NAPI poll of the port's queue (veth_poll -> veth_xdp_rcv ->
// __xsk_rcv for each frame, then xdp_do_flush -> xsk_flush) and returns how
// many frames it took off the input queue, at most NapiBudget. Polls of a
// port are serialised, as NAPI serialises a queue; a test may call Poll
// itself, with or without the softirq goroutine running. It does not
// allocate (unless it records an injection).
func (p *Port) Poll() int {
	p.napiMu.Lock()
	defer p.napiMu.Unlock()
	b := &p.in
	b.mu.Lock()
	head, avail := b.head, b.tail-b.head
	b.mu.Unlock()
	k := min(avail, uint64(p.cfg.NapiBudget))

	prod0, cons0 := p.rx.cachedProd, p.fill.cachedCons
	if p.cfg.ZeroCopy {
		p.drvRefill()
	}
	var i uint64
	for i < k {
		used := p.rcv(head+i, head+k)
		if used == 0 {
			break // zero-copy, no buffer: the rest waits (zerocopy.go)
		}
		i += used
	}
	// The entries [head, head+i) were read in place; only now may Deliver
	// reuse them.
	b.mu.Lock()
	b.head = head + i
	b.mu.Unlock()
	if p.cfg.ZeroCopy {
		p.drvRefill()
	}

	// xsk_flush: publish every RX descriptor of the poll and the FILL
	// entries it consumed, each with one store-release after the slot
	// accesses it covers (__xskq_prod_submit, __xskq_cons_release).
	if p.rx.cachedProd != prod0 {
		atomic.StoreUint32(p.rx.prod, p.rx.cachedProd)
	}
	if p.fill.cachedCons != cons0 {
		atomic.StoreUint32(p.fill.cons, p.fill.cachedCons)
	}
	if p.cfg.ZeroCopy {
		p.drvEndPoll(i < k)
	}
	return int(i)
}

// nextFrame numbers a frame taken off the input queue and draws its fault
// decision. Every frame draws the same way whatever happens to it, so the
// frames a seed hits do not depend on ring state or timing.
func (p *Port) nextFrame() (num uint64, kind FaultKind, param uint64) {
	num = p.rxFrames
	p.rxFrames++
	p.counters.rxFrames.Add(1)
	if p.rxRng == nil {
		return num, 0, 0
	}
	u := p.rxRng.Float64()
	acc := 0.0
	for i, pr := range p.cfg.Faults.rxProbs() {
		acc += pr
		if pr > 0 && u < acc {
			kind = FaultKind(i + 1)
			param = p.rxRng.Uint64()
			break
		}
	}
	if kind == 0 && p.racePending {
		// A veth race drawn for a frame that had no successor in its
		// poll: it happens at the next frame that has one.
		kind = VethRace
	}
	if kind != 0 && p.cfg.Faults.Limit > 0 && p.rxFaults >= p.cfg.Faults.Limit {
		kind = 0
	}
	return num, kind, param
}

// alloc takes a buffer as xsk_buff_alloc does in copy mode: first from the
// pool's free list, else from FILL in order (xp_alloc_new_from_fq). Entries
// beyond the UMEM are consumed and skipped silently: the kernel counts them
// only in the unexported pool->fq->invalid_descs. An empty FILL counts in
// rx_fill_ring_empty_descs when count is set (__xp_alloc). It returns the
// raw entry; the chunk is raw masked to its base (xp_aligned_extract_addr).
//
// A zero-copy driver takes the buffer from its ring instead (zerocopy.go).
func (p *Port) alloc(count bool) (raw uint64, ok bool) {
	if p.cfg.ZeroCopy {
		return p.drvPop()
	}
	if n := len(p.held); n > 0 {
		raw = p.held[n-1]
		p.held = p.held[:n-1]
		return raw, true
	}
	if raw, ok = p.fillEntry(); !ok && count {
		p.stats.fillEmpty.Add(1)
	}
	return raw, ok
}

// fillEntry consumes the next valid FILL entry, skipping invalid ones.
func (p *Port) fillEntry() (raw uint64, ok bool) {
	for {
		if p.fill.consEntries() == 0 {
			return 0, false
		}
		raw = *p.fill.slot(p.fill.cachedCons)
		p.fill.cachedCons++
		if raw&^(p.fs-1) < uint64(len(p.umem)) {
			return raw, true
		}
		p.counters.fillInvalid.Add(1)
	}
}

// unalloc puts a buffer back on the pool's free list (xsk_buff_free): the
// FILL entry stays consumed. In copy mode the buffer serves the next frame;
// a zero-copy driver puts it back in its ring at the next refill, behind
// the buffers already there: out of FILL order.
func (p *Port) unalloc(raw uint64) {
	p.held = append(p.held, raw)
	if p.cfg.ZeroCopy {
		p.counters.recycled.Add(1)
	}
}

// rcv receives input entry i (of the poll's entries up to end) and returns
// how many entries it used (2 when a VethRace takes the next frame too).
func (p *Port) rcv(i, end uint64) uint64 {
	frame, n := p.in.frame(i)
	if p.cfg.ZeroCopy && !p.drvReady() {
		return 0 // no buffer: the frame stays queued until a wakeup
	}
	if p.xdpDrop() {
		// The program's first line dropped it before its record. In
		// zero-copy it ran on a buffer already taken: recycled.
		if p.cfg.ZeroCopy {
			raw, _ := p.alloc(false) // drvReady: there is one
			p.unalloc(raw)
		}
		return 1
	}
	n += p.prefix // what the program prepended is part of the frame now
	num, kind, param := p.nextFrame()
	// __xsk_rcv: a frame larger than the RX frame size cannot be copied
	// (ENOSPC), a missing FILL buffer drops it (ENOMEM).
	if n > p.maxRx {
		p.stats.rxDropped.Add(1)
		return 1
	}
	raw, ok := p.alloc(true)
	if !ok {
		p.stats.rxDropped.Add(1)
		return 1
	}
	if kind == SkipFill {
		p.injectRx(Injection{Kind: SkipFill, N: num, Slot: p.rx.cachedProd, Addr: raw, Fill: raw})
		if raw, ok = p.alloc(true); !ok {
			p.stats.rxDropped.Add(1)
			return 1
		}
		kind = 0
	}
	need := uint32(1)
	if kind == VethRace || kind == Duplicate {
		need = 2
	}
	free := p.rx.prodFree(need)
	if free == 0 {
		// __xsk_rcv_zc: xskq_prod_reserve_desc fails (ENOBUFS); the buffer
		// goes back to the pool.
		p.stats.rxRingFull.Add(1)
		p.unalloc(raw)
		return 1
	}
	if free < need {
		kind = 0
	}
	slot := p.rx.cachedProd
	d := xsk.Desc{Addr: p.descAddr(raw), Len: uint32(n)}
	switch kind {
	case VethRace:
		if !p.racePending {
			p.raceDrawn = num
		}
		if used, ok := p.vethRace(raw, frame, num, d, i, end); ok {
			p.racePending = false
			return used
		}
		p.racePending = true
	case Duplicate:
		p.write(raw, frame, num)
		*p.rx.slot(slot) = d
		*p.rx.slot(slot + 1) = d
		p.rx.cachedProd += 2
		p.counters.rxDescs.Add(2)
		p.injectRx(Injection{Kind: Duplicate, N: num, Slot: slot + 1, Addr: d.Addr, Len: d.Len, Fill: raw})
		return 1
	case Drop:
		p.injectRx(Injection{Kind: Drop, N: num, Slot: slot, Addr: raw, Fill: raw})
		return 1
	case WrongLength:
		delta := uint32(1 + param%16)
		if int(d.Len+delta) <= p.maxRx {
			d.Len += delta
		} else {
			d.Len -= delta // n > maxRx-delta > delta
		}
		p.injectRx(Injection{Kind: WrongLength, N: num, Slot: slot, Addr: d.Addr, Len: d.Len, Fill: raw})
	case BadAddr:
		if param&1 == 0 {
			d.Addr += uint64(len(p.umem)) // beyond the UMEM, plausible offset
		} else {
			d.Addr += 1 + (param>>1)%64 // inside the chunk, misaligned
		}
		p.injectRx(Injection{Kind: BadAddr, N: num, Slot: slot, Addr: d.Addr, Len: d.Len, Fill: raw})
	}
	p.write(raw, frame, num)
	*p.rx.slot(slot) = d
	p.rx.cachedProd++
	p.counters.rxDescs.Add(1)
	return 1
}

// vethRace replays the pre-fa349e396e48 interleaving "rcv CPU0, rcv CPU2,
// flush CPU0, flush CPU2" inside one poll, without a data race: CPU0
// receives this frame into F1 and writes its descriptor at the cached
// producer s; CPU2, whose cached producer is also s, receives the next frame
// into F2 and overwrites slot s; each flush adds one, so s+1 is published
// unwritten. It needs the next frame in this poll, a second buffer and two
// free slots; otherwise it reports !ok and the frame is received normally.
func (p *Port) vethRace(f1 uint64, frame []byte, num uint64, d1 xsk.Desc, i, end uint64) (uint64, bool) {
	if i+1 >= end {
		return 0, false
	}
	frame2, n2 := p.in.frame(i + 1)
	n2 += p.prefix
	if n2 > p.maxRx {
		return 0, false
	}
	f2, ok := p.alloc(false)
	if !ok {
		return 0, false
	}
	s := p.rx.cachedProd
	p.write(f1, frame, num)
	*p.rx.slot(s) = d1

	num2, _, _ := p.nextFrame() // CPU2's frame; its own draw is void
	p.write(f2, frame2, num2)
	d2 := xsk.Desc{Addr: p.descAddr(f2), Len: uint32(n2)}
	*p.rx.slot(s) = d2
	p.rx.cachedProd += 2
	p.counters.rxDescs.Add(2)
	p.injectRx(Injection{Kind: VethRace, N: num, Drawn: p.raceDrawn, Slot: s, Addr: d2.Addr, Len: d2.Len, Fill: f1})
	return 2, true
}

func (p *Port) injectRx(in Injection) {
	p.rxFaults++
	p.record(in)
}

// descAddr is the RX descriptor address of a frame received into FILL
// entry raw: chunk_base + Headroom + 256, where copy mode copies the frame
// (its prepended record included) and a zero-copy driver puts the packet;
// with a record prepended in place (zero-copy, RecordHead) the data start
// moved back by its size.
func (p *Port) descAddr(raw uint64) uint64 {
	a := raw&^(p.fs-1) + p.rxOff
	if p.cfg.ZeroCopy && p.cfg.Record == RecordHead {
		a -= MetaSize
	}
	return a
}

// write puts a frame into the chunk of FILL entry raw at Headroom + 256
// with the XDP program's record: right before it (the metadata area: copy
// mode copies from data_meta, xsk_copy_xdp; zero-copy leaves it in place),
// or in front of it as part of the data (the head carrier: copy mode
// copies record and frame to Headroom + 256, zero-copy has the record in
// the 16 bytes before the frame), or none. The copy is the DMA in
// zero-copy and xsk_copy_xdp in copy mode.
func (p *Port) write(raw uint64, frame []byte, num uint64) {
	data := raw&^(p.fs-1) + p.rxOff
	var m []byte
	magic := uint32(MetaMagic)
	switch p.cfg.Record {
	case RecordMeta:
		m = p.umem[data-MetaSize : data]
	case RecordHead:
		magic = HeadMagic
		if p.cfg.ZeroCopy {
			m = p.umem[data-MetaSize : data]
		} else {
			m = p.umem[data : data+MetaSize]
			data += MetaSize
		}
	}
	copy(p.umem[data:data+uint64(len(frame))], frame)
	if m == nil {
		return
	}
	binary.LittleEndian.PutUint32(m[0:], magic)
	binary.LittleEndian.PutUint32(m[4:], uint32(len(frame)))
	binary.LittleEndian.PutUint32(m[8:], uint32(num+1)) // seq = ++seqs[queue]
	binary.LittleEndian.PutUint32(m[12:], uint32(p.cfg.Queue))
}
