package engine

import (
	"encoding/binary"

	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Partial checksums. A neighbour with checksum offload (every veth and
// container interface by default) sends TCP and UDP with only the
// pseudo-header sum in the checksum field and leaves the rest to its
// device (packet.FindPartial). AF_XDP hands the gate bytes without that
// state, and a copy-mode TX skb is CHECKSUM_NONE, so the far end would
// drop the frame: the gate finishes the job.
//
// Where the frame leaves through a socket that can ask for it
// (xsk.Socket.TxChecksum: copy mode, a UMEM with TX metadata), the worker
// asks the kernel (XDP_TXMD_FLAGS_CHECKSUM): the skb it builds is
// CHECKSUM_PARTIAL again, as the sender's was, so the device's offload
// (or the stack's software fallback) completes it, and over veth the
// receiver trusts it as it would have trusted the sender's. Nobody sums
// the payload. Elsewhere the worker sums it in software before the
// Inspector sees the frame. The deferred sum only applies when the
// segment ends at the frame's end: the kernel sums to the end of the skb,
// link-layer padding included.

// partialChecksums finds the batch's partial checksums, counted per port,
// and completes those that cannot be left to the kernel.
func (w *Worker) partialChecksums(p *port, pkts []Packet) {
	if w.e.cfg.NoChecksumCompletion {
		return
	}
	var n uint64
	for i := range pkts {
		pk := &pkts[i]
		if w.parsed.Parse(pk.Data) != nil {
			continue
		}
		start, field, end, ok := packet.FindPartial(&w.parsed, pk.Data)
		if !ok {
			continue
		}
		n++
		if w.txCsum && end == len(pk.Data) {
			pk.csumStart, pk.csumField = uint16(start), uint16(field)
			pk.csumWant = binary.BigEndian.Uint16(pk.Data[field:])
			continue
		}
		packet.CompleteAt(pk.Data[start:end], field-start, w.parsed.Proto == packet.ProtoUDP)
	}
	if n > 0 {
		p.stats.ChecksumsCompleted.Add(n)
	}
}

// txDesc is the TX descriptor for pk leaving through port to, with the
// kernel asked to complete a checksum left partial, or the checksum
// completed here if that port cannot ask.
func (w *Worker) txDesc(to *port, pk *Packet) xsk.Desc {
	d := xsk.Desc{Addr: pk.Desc.Addr, Len: pk.Len}
	if pk.csumField == 0 {
		return d
	}
	// Read from the UMEM, not Data: an Inspector may have resliced Data.
	f := w.e.umem.Frame(pk.Desc.Addr, pk.Desc.Len)
	if pk.Len != pk.Desc.Len || len(f) < int(pk.csumField)+2 || binary.BigEndian.Uint16(f[pk.csumField:]) != pk.csumWant {
		// Rewritten without CompleteChecksum (an Inspector bug): the
		// field is no longer the pseudo-header sum a completion needs,
		// and what it should be is not known here. Counted
		// (checksums_stale_total); the frame goes as the Inspector left it.
		pk.csumField = 0
		to.stats.ChecksumsStale.Add(1)
		return d
	}
	if !to.txCsum {
		pk.CompleteChecksum()
		return d
	}
	w.e.umem.SetTxChecksum(d.Addr, pk.csumStart, pk.csumField-pk.csumStart)
	d.Options = xsk.OptTxMetadata
	w.offloaded[to.side]++
	return d
}
