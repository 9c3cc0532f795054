package packet

import "encoding/binary"

// Checksum offload, seen from a bump in the wire.
//
// A stack that offloads the transport checksum to its device (every veth
// and container interface by default: tx-checksumming on) hands the device
// a CHECKSUM_PARTIAL packet: the TCP or UDP checksum field holds only the
// folded sum of the pseudo-header (__tcp_v4_send_check: th->check =
// ~tcp_v4_check(len, saddr, daddr, 0)), and the skb carries csum_start and
// csum_offset for whoever completes it. A bridge keeps that state; AF_XDP
// sees only bytes, and copy-mode TX builds a CHECKSUM_NONE skb, so the far
// end receives a checksum it rejects. CompletePartial recognises the
// signature and computes the full checksum in place.
//
// The signature is exact for what stacks send. The gate does not repair
// corrupt packets: a segment whose checksum is simply wrong stays wrong;
// only one whose field equals the folded pseudo-header sum for its length
// is completed (a corrupted field that happens to hold that value, 1 in
// 65536 of corrupted packets, is completed too: indistinguishable).

// CompletePartial completes, in place, the TCP or UDP checksum of the
// packet p describes in frame (p from a successful Parse of frame) if its
// field holds only the pseudo-header sum, and reports whether it did.
// Fragments, other protocols, UDP over IPv4 without a checksum and
// packets shorter than their headers are left alone. It does not allocate.
func CompletePartial(p *Packet, frame []byte) bool {
	if p.L4Off < 0 || p.Fragment || p.MoreFragments || (p.IPVersion != 4 && p.IPVersion != 6) {
		return false
	}
	var off int // of the checksum field in the L4 header
	switch p.Proto {
	case ProtoTCP:
		off = 16
	case ProtoUDP:
		off = 6
	default:
		return false
	}
	end := p.L3Off + p.IPTotalLen
	if end > len(frame) || p.L4Off+off+2 > end {
		return false
	}
	seg := frame[p.L4Off:end]
	field := binary.BigEndian.Uint16(seg[off:])
	if p.Proto == ProtoUDP && p.IPVersion == 4 && field == 0 {
		return false // no checksum (RFC 768)
	}
	ph := pseudoHeaderSum(p, p.Proto, len(seg))
	if field != fold(ph) {
		return false
	}
	s := sum(seg[:off], ph)
	s = sum(seg[off+2:], s)
	c := ^fold(s)
	if c == 0 && p.Proto == ProtoUDP {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(seg[off:], c)
	return true
}
