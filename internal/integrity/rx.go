package integrity

import (
	"fmt"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flightrec"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// The checks of every RX descriptor, and how its chunk leaves FILL.

// Received implements engine.Checker.
func (k *Checker) Received(side engine.Side, descs []xsk.Desc, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	for i, d := range descs {
		slot := s.rxSlot
		s.rxSlot++
		s.rec.RecordAt(k.now, flightrec.RxRecv, d.Addr, d.Len, b, slot)
		if disp := k.rx(s, d, slot); disp != engine.Keep {
			out[i] = disp
			nbad++
		}
		s.shadow[slot&uint32(len(s.shadow)-1)] = d
		s.last, s.haveLast = d, true
	}
	k.end()
	return nbad
}

// rx checks one RX descriptor in the order poison, bounds, ownership,
// order, metadata, IP length, and moves its chunk from FILL to the worker.
func (k *Checker) rx(s *sock, d xsk.Desc, slot uint32) engine.Disposition {
	c := k.c
	exp, _ := s.front()
	if k.on(CheckPoison) {
		if d.Addr == xsk.Poison {
			return k.rxGarbage(s, d, slot, UnwrittenSlot, "slot holds the poison written when it was released: published by the kernel without being written")
		}
		if d == (xsk.Desc{}) {
			return k.rxGarbage(s, d, slot, UninitializedDesc, "all-zero descriptor: a slot published without ever being written")
		}
	}
	ci, off, ok := k.chunk(d.Addr)
	if !ok {
		if k.on(CheckBounds) {
			return k.rxGarbage(s, d, slot, BadAddr, "RX address beyond the UMEM")
		}
		s.owed++
		return engine.Keep // the engine drops it as an invalid descriptor
	}
	cls := noClass
	var vexp, vgot uint64
	var detail string
	if k.on(CheckBounds) {
		fs := c.fs
		switch {
		case s.rxOff != 0 && off != s.rxOff:
			cls, vexp, vgot, detail = BadAddr, s.rxOff, off, "RX offset in chunk is not headroom + 256"
		case d.Len == 0 || off+uint64(d.Len) > fs:
			cls, vexp, vgot, detail = BadLen, fs-off, uint64(d.Len), "RX length zero or beyond the chunk"
		case d.Options != 0:
			cls, vgot, detail = BadOptions, uint64(d.Options), "RX options set (no multi-buffer)"
		}
	}
	if !k.mine(ci) {
		s.owed++
		if cls == noClass && k.on(CheckOwnership) {
			cls, detail = ForeignFrame, k.foreign(ci)
		}
		if cls == noClass {
			return engine.Keep // the engine quarantines it itself
		}
		return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
	}

	m, strip, haveMeta := k.record(s, d, off)
	regress := haveMeta && s.haveSeq && !k.c.cfg.NoSeqOrder && int32(m.Seq-s.lastSeq) <= 0

	st := k.own[ci-k.lo]
	if st != fillOf(s.side) {
		// Not waiting in this socket's FILL: the kernel cannot have
		// written into it. Stale or invented; the chunk is live elsewhere.
		s.owed++
		if cls == noClass && k.on(CheckOwnership) {
			cls, vexp, vgot = RxNotInFill, uint64(exp)*c.fs, k.base(ci)
			if s.haveLast && d == s.last {
				cls = Duplicate
			}
			detail = "chunk is " + k.stateString(st)
		}
		if cls == noClass {
			return engine.Keep
		}
		return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
	}

	if s.zc || !k.on(CheckOrder) {
		// A zero-copy driver hands out buffers recycled into its pool
		// before FILL entries, and with the order check off the order
		// is not trusted either: any chunk in this socket's FILL may
		// come next, and it just leaves the FILL set; the entries ahead
		// of it stay (they may come yet), none is marked lost. Without
		// the order, only older metadata says a descriptor is old (its
		// chunk still queued); a repeat of the previous descriptor or
		// last lap's value of the slot may be a recycled buffer.
		if regress {
			s.owed++
			if cls == noClass {
				switch {
				case k.on(CheckMetadata):
					cls, vexp, vgot = SeqRegression, uint64(s.lastSeq)+1, uint64(m.Seq)
				case k.on(CheckOwnership):
					cls, vgot = StaleDesc, k.base(ci)
				default:
					return engine.Keep
				}
				detail = "metadata sequence went backwards: an old descriptor (the chunk is still queued in FILL)"
			}
			return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
		}
		if !s.zc {
			// Copy mode keeps the order, for the check to come back on.
			if depth := s.depth(ci); depth >= 0 {
				s.take(depth)
			}
		}
		return k.rxTaken(s, d, slot, ci, off, m, strip, haveMeta, cls, vexp, vgot, detail)
	}
	depth := s.depth(ci)
	if depth != 0 {
		// In FILL but not next. Either the kernel skipped entries (Drop,
		// an invalid entry) or this descriptor is old: the previous one
		// again, last lap's value of the slot, or older metadata than
		// what we already saw. An old one must not move the FILL order:
		// the chunk is still queued in the kernel.
		stale := depth < 0 || (s.haveLast && d == s.last) || d == s.shadow[slot&uint32(len(s.shadow)-1)] || regress
		if stale {
			s.owed++
			if cls == noClass {
				switch {
				case s.haveLast && d == s.last:
					if k.on(CheckOwnership) {
						cls = Duplicate
					}
				case regress && k.on(CheckMetadata):
					cls, vexp, vgot = SeqRegression, uint64(s.lastSeq)+1, uint64(m.Seq)
				case k.on(CheckOwnership):
					cls = StaleDesc
				}
				if cls == Duplicate || cls == StaleDesc {
					vexp, vgot = uint64(exp)*c.fs, k.base(ci)
				}
				detail = fmt.Sprintf("chunk is still queued in FILL (%d entries behind the next one): an old descriptor", depth)
			}
			if cls == noClass {
				return engine.Keep
			}
			return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
		}
		if uint32(depth) > s.owed && cls == noClass {
			cls, vexp, vgot = OutOfOrder, uint64(exp)*c.fs, k.base(ci)
			detail = fmt.Sprintf("chunk was %d deep in FILL: the kernel consumed the %d entries before it without producing them; marked lost", depth, depth)
		}
		k.lose(s, depth)
	} else if regress && k.on(CheckMetadata) {
		// Next in FILL yet carrying older metadata: the kernel did not
		// write this frame, so the chunk is still queued; leave it.
		s.owed++
		if cls == noClass {
			cls, vexp, vgot = SeqRegression, uint64(s.lastSeq)+1, uint64(m.Seq)
			detail = "metadata sequence went backwards: two NAPI polls of one queue interleaved (the veth race signature)"
		}
		return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
	}
	// The kernel consumed this FILL entry for this slot.
	s.dqHead++
	return k.rxTaken(s, d, slot, ci, off, m, strip, haveMeta, cls, vexp, vgot, detail)
}

// rxTaken finishes the checks of an RX descriptor whose chunk the kernel
// took from this socket's FILL for it: the chunk is the worker's now.
func (k *Checker) rxTaken(s *sock, d xsk.Desc, slot, ci uint32, off uint64, m xdpprog.Meta, strip uint32, haveMeta bool,
	cls Class, vexp, vgot uint64, detail string) engine.Disposition {
	c := k.c
	s.owed = 0
	k.own[ci-k.lo] = rxOf(s.side)
	if start, n := off+uint64(strip), d.Len-strip; start <= 0xffff && n <= 0xffff && n <= d.Len {
		k.rxAt[ci-k.lo] = uint32(start)<<16 | n
	} else {
		k.rxAt[ci-k.lo] = 0
	}
	if haveMeta {
		if s.haveSeq {
			s.seqGaps += uint64(m.Seq - s.lastSeq - 1)
		} else {
			s.seqGaps += uint64(m.Seq - 1) // the program numbers from 1
		}
		s.lastSeq, s.haveSeq = m.Seq, true
	}
	if cls == noClass && k.on(CheckMetadata) && c.cfg.Carrier != xdpprog.CarrierNone && (off >= xdpprog.MetaSize || c.cfg.Carrier == xdpprog.CarrierHead) {
		switch {
		case !haveMeta:
			cls, vexp, vgot, detail = BadMeta, uint64(xdpprog.MetaMagic), uint64(m.Magic), "no XDP program record with the frame (carrier "+c.cfg.Carrier.String()+")"
			if c.cfg.Carrier == xdpprog.CarrierHead {
				vexp = uint64(xdpprog.HeadMagic)
			}
		case m.Len != d.Len-strip:
			cls, vexp, vgot, detail = MetaLenMismatch, uint64(m.Len), uint64(d.Len-strip), "descriptor length differs from what the XDP program saw"
		case int(m.Queue) != s.queue:
			cls, vexp, vgot, detail = BadMeta, uint64(s.queue), uint64(m.Queue), "XDP metadata names another queue"
		}
	}
	if f := k.frameAt(d.Addr+uint64(strip), d.Len-strip); cls == noClass && k.on(CheckIPLength) && len(f) == int(d.Len-strip) && !ipLengthOK(f) {
		// Malformed input, not a descriptor fault: counted and dropped,
		// no evidence.
		c.counts[IPLength].Add(1)
		s.rec.RecordAt(k.now, flightrec.Drop, d.Addr, d.Len, uint32(k.batch), uint32(IPLength))
		return engine.Free
	}
	if cls == noClass {
		return engine.Keep
	}
	if cls == BadMeta && !haveMeta {
		// No record at all: the kernel may never have written this chunk.
		// A stale descriptor that names the next FILL entry passes the
		// order check, and the bytes in front of its frame may be what
		// the chunk last held: AF_XDP TX metadata (a checksum left to the
		// kernel) or a cleared metadata area, not an old record whose
		// sequence number would give it away. The FILL entry may still be
		// the kernel's, so the chunk is withheld.
		return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Quarantine)
	}
	// The chunk was this socket's next FILL entry: it is provably ours
	// and idle now, so only the packet is dropped.
	return k.rxViolation(s, d, slot, cls, vexp, vgot, detail, engine.Free)
}

// rxGarbage handles an RX entry that names no usable chunk. Whether the
// kernel consumed a FILL entry for it is unknown: owed defers the question
// to the next good descriptor.
func (k *Checker) rxGarbage(s *sock, d xsk.Desc, slot uint32, cls Class, detail string) engine.Disposition {
	s.owed++
	exp, _ := s.front()
	return k.rxViolation(s, d, slot, cls, uint64(exp)*k.c.fs, d.Addr, detail, engine.Quarantine)
}

func (k *Checker) rxViolation(s *sock, d xsk.Desc, slot uint32, cls Class, exp, got uint64, detail string, disp engine.Disposition) engine.Disposition {
	v := &Violation{Class: cls, Ring: xsk.KindRx, Slot: slot, Addr: d.Addr, Len: d.Len, Expected: exp, Got: got, Detail: detail}
	k.violate(s, v, k.frameAt(d.Addr, d.Len))
	if disp == engine.Quarantine {
		s.rec.RecordAt(k.now, flightrec.Quarantine, d.Addr, d.Len, uint32(k.batch), uint32(cls))
	} else {
		s.rec.RecordAt(k.now, flightrec.Drop, d.Addr, d.Len, uint32(k.batch), uint32(cls))
	}
	return disp
}

// record finds the XDP program's record of RX descriptor d, whose address
// lies at offset off in a chunk of the UMEM, and how many bytes of it
// precede the frame (see xdpprog.Carrier.Locate). It reads nothing beyond
// the chunk. A record carried in front of the frame while the carrier is
// the metadata area means the driver refused metadata at run time and the
// program fell back: logged once per socket (the engine counts frames).
func (k *Checker) record(s *sock, d xsk.Desc, off uint64) (xdpprog.Meta, uint32, bool) {
	c := k.c.cfg.Carrier
	n := uint32(min(uint64(d.Len), k.c.fs-off))
	m, strip, ok := c.Locate(k.area, d.Addr, n, off)
	if strip > 0 && c != xdpprog.CarrierHead && !s.metaFallback {
		s.metaFallback = true
		k.c.log.Warn("driver refused XDP metadata at run time: the XDP program carries its record in front of the frame instead (counted in meta_fallback)",
			"iface", s.iface, "queue", s.queue)
	}
	return m, strip, ok
}

// violate fills in the common fields, records the event and reports.
