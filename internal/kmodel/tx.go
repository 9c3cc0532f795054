package kmodel

import (
	"encoding/binary"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Kick models sendto(fd, NULL, 0, MSG_DONTWAIT) in copy mode: it runs
// __xsk_generic_xmit on the caller's goroutine, serialised per port like
// xs->mutex, and returns what sendto would:
//
//   - 0: TX found empty (counted in tx_ring_empty_descs, as
//     xskq_cons_read_desc counts every empty peek, even after a drained
//     batch), or an invalid descriptor ended the batch;
//   - EAGAIN: TxBatch descriptors were sent and more wait, or COMPLETION is
//     full (the descriptor stays on TX for the retry);
//   - EBUSY: the peer dropped the frame (veth_xmit's NET_XMIT_DROP, input
//     queue full); the descriptor is still completed;
//   - EINVAL: XDP_TX_METADATA without tx_metadata_len (or with metadata the
//     kernel refuses: unknown flags, a checksum beyond the frame); the descriptor stays,
//     yet its address is added to COMPLETION on every attempt (the hazard
//     of afxdp-kernel-notes §7.4, present in 6.18 and on the project kernel);
//   - ENETDOWN: the port is closed.
//
// A descriptor is valid as xp_validate_desc says in aligned mode: len !=
// 0, tx_metadata_len bytes before addr and the frame within one chunk, addr inside the
// UMEM, no options beyond XDP_PKT_CONTD|XDP_TX_METADATA. An invalid one
// counts in tx_invalid_descs, is completed with its raw addr (the project
// kernel does so; stock 6.18 leaks it) and ends the batch. COMPLETION and
// the TX consumer are published once, at the end of the call. Multi-buffer
// chains are not modelled: each descriptor is one frame. Kick does not
// allocate (unless it records an injection).
func (p *Port) Kick() unix.Errno {
	if p.closed.Load() {
		return unix.ENETDOWN
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	cons0, prod0 := p.tx.cachedCons, p.comp.cachedProd
	err := p.xmit()
	if p.comp.cachedProd != prod0 {
		atomic.StoreUint32(p.comp.prod, p.comp.cachedProd)
	}
	if p.tx.cachedCons != cons0 {
		atomic.StoreUint32(p.tx.cons, p.tx.cachedCons)
	}
	return err
}

func (p *Port) xmit() unix.Errno {
	budget := p.cfg.TxBudget
	for {
		if p.tx.consEntries() == 0 {
			p.stats.txEmpty.Add(1)
			return 0
		}
		d := *p.tx.slot(p.tx.cachedCons)
		if !p.validTx(d) {
			// xskq_cons_is_valid_desc failed: counted, and the batch ends.
			if p.comp.prodFree(1) == 0 {
				return unix.EAGAIN
			}
			p.stats.txInvalid.Add(1)
			p.complete(d.Addr)
			p.tx.cachedCons++
			return 0
		}
		if budget == 0 {
			return unix.EAGAIN
		}
		budget--
		// xsk_cq_reserve_locked: no room to complete, no send.
		if p.comp.prodFree(1) == 0 {
			return unix.EAGAIN
		}
		frame := p.umem[d.Addr : d.Addr+uint64(d.Len)]
		if d.Options&optTxMetadata != 0 {
			var ok bool
			if frame, ok = p.txMetadata(d.Addr, frame); !ok {
				// xsk_build_skb fails after the destructor that completes
				// the address is installed: completed, yet left on TX.
				p.complete(d.Addr)
				return unix.EINVAL
			}
		}
		ok := true
		if p.peer != nil {
			ok = p.peer.Deliver(frame)
		}
		// Copy mode completes when the skb is freed, which for veth is
		// right after veth_xmit (delivered or dropped).
		if !p.maybeLose(d.Addr) {
			p.complete(d.Addr)
		}
		p.tx.cachedCons++
		p.counters.txFrames.Add(1)
		p.maybeSpurious(d.Addr)
		if !ok {
			p.counters.txPeerDrops.Add(1)
			return unix.EBUSY
		}
	}
}

// txMetadata applies the TX metadata before the frame at addr as
// xsk_skb_metadata does, and returns the frame the peer receives. A
// checksum request is what the device does with the CHECKSUM_PARTIAL skb
// it makes: the ones'-complement sum from csum_start to the end, field
// included, stored complemented at csum_start+csum_offset, in the skb's
// copy (the UMEM is not written). false: EINVAL (no metadata area, unknown
// flags, a checksum beyond the frame).
func (p *Port) txMetadata(addr uint64, frame []byte) ([]byte, bool) {
	md := uint64(p.cfg.TxMetadataLen)
	if md == 0 {
		return nil, false
	}
	m := xsk.ReadTxMetadata(p.umem[addr-md : addr])
	if !m.Valid(uint32(len(frame))) {
		return nil, false
	}
	if m.Flags&xsk.TxmdChecksum == 0 {
		return frame, true
	}
	start, off := int(m.CsumStart), int(m.CsumOffset)
	skb := p.txSkb[:len(frame)]
	copy(skb, frame)
	c := packet.Checksum(skb[start:], 0)
	if c == 0 {
		c = 0xffff // CSUM_MANGLED_0
	}
	binary.BigEndian.PutUint16(skb[start+off:], c)
	return skb, true
}

func (p *Port) validTx(d xsk.Desc) bool {
	// With a TX metadata area, every frame needs room for it before its
	// address in its chunk (xp_aligned_validate_desc).
	md := uint64(p.cfg.TxMetadataLen)
	return d.Len != 0 && d.Addr&(p.fs-1) >= md &&
		d.Addr&(p.fs-1)+uint64(d.Len) <= p.fs &&
		d.Addr < uint64(len(p.umem)) &&
		d.Options&^(optContd|optTxMetadata) == 0
}

// complete writes addr at the COMPLETION producer; the caller checked room.
func (p *Port) complete(addr uint64) {
	*p.comp.slot(p.comp.cachedProd) = addr
	p.comp.cachedProd++
}

// maybeLose draws the LostCompletion decision for one transmitted
// descriptor (before maybeSpurious numbers it): true means its completion
// is never written.
func (p *Port) maybeLose(addr uint64) bool {
	if p.lostRng == nil || p.lostRng.Float64() >= p.cfg.Faults.LostCompletion {
		return false
	}
	if p.cfg.Faults.Limit > 0 && p.txFaults >= p.cfg.Faults.Limit {
		return false
	}
	p.txFaults++
	p.record(Injection{Kind: LostCompletion, N: p.txDescs, Slot: p.comp.cachedProd, Addr: addr})
	return true
}

// maybeSpurious draws the SpuriousCompletion decision for one transmitted
// descriptor and, when it hits and COMPLETION has room, completes a chunk
// that is neither the one just sent nor waiting on TX.
func (p *Port) maybeSpurious(sent uint64) {
	num := p.txDescs
	p.txDescs++
	if p.txRng == nil {
		return
	}
	if p.txRng.Float64() >= p.cfg.Faults.SpuriousCompletion {
		return
	}
	param := p.txRng.Uint64()
	if p.cfg.Faults.Limit > 0 && p.txFaults >= p.cfg.Faults.Limit {
		return
	}
	if p.comp.prodFree(1) == 0 {
		return
	}
	chunks := uint64(len(p.umem)) / p.fs
	// Walk from a random chunk to the first one not on TX: the result
	// depends only on the draw and the ring's contents.
	var addr uint64
	found := false
	for k := uint64(0); k < chunks && !found; k++ {
		c := (param + k) % chunks * p.fs
		if c == sent&^(p.fs-1) || p.onTx(c) {
			continue
		}
		addr, found = c+p.rxOff, true
	}
	if !found {
		return
	}
	p.txFaults++
	slot := p.comp.cachedProd
	p.complete(addr)
	p.record(Injection{Kind: SpuriousCompletion, N: num, Slot: slot, Addr: addr})
}

// onTx reports whether chunk base c has a descriptor between the TX
// consumer and the producer as last loaded.
func (p *Port) onTx(c uint64) bool {
	// Bounded by the ring size: a scribbled producer must not spin us.
	for i, n := p.tx.cachedCons, uint32(0); i != p.tx.cachedProd && n <= p.tx.mask; i, n = i+1, n+1 {
		if p.tx.slot(i).Addr&^(p.fs-1) == c {
			return true
		}
	}
	return false
}
