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

// FindPartial reports whether the TCP or UDP checksum of the packet p
// describes in frame (p from a successful Parse of frame) holds only the
// pseudo-header sum, and if so where its segment starts (start) and ends
// (end, before any link-layer padding) and where the field is (field),
// all offsets into frame. Fragments, other protocols, UDP over IPv4
// without a checksum and packets shorter than their headers are not
// partial. It does not allocate.
func FindPartial(p *Packet, frame []byte) (start, field, end int, ok bool) {
	if p.L4Off < 0 || p.Fragment || p.MoreFragments || (p.IPVersion != 4 && p.IPVersion != 6) {
		return 0, 0, 0, false
	}
	var off int // of the checksum field in the L4 header
	switch p.Proto {
	case ProtoTCP:
		off = 16
	case ProtoUDP:
		off = 6
	default:
		return 0, 0, 0, false
	}
	end = p.L3Off + p.IPTotalLen
	if end > len(frame) || p.L4Off+off+2 > end {
		return 0, 0, 0, false
	}
	seg := frame[p.L4Off:end]
	v := binary.BigEndian.Uint16(seg[off:])
	if p.Proto == ProtoUDP && p.IPVersion == 4 && v == 0 {
		return 0, 0, 0, false // no checksum (RFC 768)
	}
	if v != fold(pseudoHeaderSum(p, p.Proto, len(seg))) {
		return 0, 0, 0, false
	}
	return p.L4Off, p.L4Off + off, end, true
}

// CompleteAt completes the partial checksum at seg[off:] in place: the
// field holds the folded pseudo-header sum, so the ones'-complement sum
// of the whole segment, field included, is the sum the checksum covers
// (what a device with checksum offload computes from csum_start). udp
// stores a computed zero as all ones (RFC 768).
func CompleteAt(seg []byte, off int, udp bool) {
	c := ^fold(sum(seg, 0))
	if c == 0 && udp {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[off:], c)
}

// CompletePartial completes, in place, the TCP or UDP checksum of the
// packet p describes in frame (p from a successful Parse of frame) if its
// field holds only the pseudo-header sum, and reports whether it did.
// Fragments, other protocols, UDP over IPv4 without a checksum and
// packets shorter than their headers are left alone. It does not allocate.
func CompletePartial(p *Packet, frame []byte) bool {
	start, field, end, ok := FindPartial(p, frame)
	if ok {
		CompleteAt(frame[start:end], field-start, p.Proto == ProtoUDP)
	}
	return ok
}
