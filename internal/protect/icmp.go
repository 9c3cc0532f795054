package protect

import (
	"encoding/binary"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

// icmpError undoes the SYN proxy's sequence translation in the TCP header
// an ICMP error quotes (w.pkt, in pk): fragmentation needed, packet too
// big, any destination unreachable, time exceeded, parameter problem.
// Endpoints check the quote against their own sequence space (Linux's
// tcp_v4_err and tcp_v6_err drop an error whose quoted seq is not between
// SND.UNA and SND.NXT), so an untranslated quote is ignored, and behind a
// smaller MTU the server's path MTU discovery never learns: a black hole.
//
// The quoted segment left the gate by the interface the error comes in
// by. From outer, it is a server's segment whose seq the proxy lowered by
// the offset: it gets it back. From inner, it is a client's segment whose
// ack (and SACK edges) the proxy raised: the ack is lowered again, if the
// quote reaches it (RFC 792 promises only 8 bytes: ports and seq); SACK
// edges are left, no stack reads them in an error. The ICMP checksum is
// updated incrementally, and the quoted TCP checksum too if quoted, so it
// is again the one the endpoint sent; the quoted IP header is unchanged
// (no address is translated), so its checksum stays valid. The frame is
// forwarded whatever happens here: this stage judges TCP only.
func (i *Inspector) icmpError(w *workerState, dir flow.Dir, pk *engine.Packet, now int64) {
	p := w.pkt
	msg := pk.Data[p.L4Off : p.L3Off+p.IPTotalLen] // the parser checked both bounds
	q := &w.quoted
	if len(msg) < 8 || !q.Parse(msg[8:], p.IPVersion) || q.Proto != packet.ProtoTCP || q.L4Off < 0 {
		return
	}
	*w.seg = flow.Segment{Src: q.Src, Dst: q.Dst, SrcPort: q.SrcPort, DstPort: q.DstPort}
	f, ok := i.table.ProxiedOf(w.seg, tableNow(now))
	if !ok || f.SeqAdjust == 0 || f.State == flow.StateSynSent || f.Reply != (dir == flow.Inbound) {
		// Not proxied, or its SeqAdjust is still the cookie (nothing of
		// the server crossed yet), or the error came in by the side the
		// quoted segment did not leave by.
		return
	}
	tcp := msg[8+q.L4Off:]
	field, delta := 4, f.SeqAdjust // the server's seq, lowered by the proxy
	if !f.Reply {
		field, delta = 8, -f.SeqAdjust // the client's ack, raised
		if len(tcp) > 13 && tcp[13]&packet.ACK == 0 {
			return // the proxy translated no ack in it
		}
	}
	if len(tcp) < field+4 {
		return
	}
	// Offsets are even within the message (IP headers are multiples of 4
	// bytes), so word-wise incremental updates apply.
	ck := binary.BigEndian.Uint16(msg[2:])
	old := binary.BigEndian.Uint32(tcp[field:])
	binary.BigEndian.PutUint32(tcp[field:], old+delta)
	ck = packet.UpdateChecksum32(ck, old, old+delta)
	if len(tcp) >= 18 {
		tck := binary.BigEndian.Uint16(tcp[16:])
		nck := packet.UpdateChecksum32(tck, old, old+delta)
		binary.BigEndian.PutUint16(tcp[16:], nck)
		ck = packet.UpdateChecksum16(ck, tck, nck)
	}
	binary.BigEndian.PutUint16(msg[2:], ck)
	w.c.proxy[pICMPTranslated].inc()
}
