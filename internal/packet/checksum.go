package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// sum adds b as big-endian 16-bit words (an odd trailing byte is padded
// with zero, RFC 1071) to initial, returning an unfolded 64-bit sum. The
// 64-bit accumulator cannot overflow for any frame, so folding happens once.
//
// Long inputs (a 1500-byte segment whose partial checksum the gate
// completes) are summed 64 bits at a time with carries (sum64): about 3x
// the 16-bit loop. The result is equal to the 16-bit loop's modulo 0xffff
// and zero exactly when that is, so fold gives the same value.
func sum(b []byte, initial uint64) uint64 {
	s := initial
	if len(b) >= 64 {
		n := len(b) &^ 7
		s += uint64(sum64(b[:n]))
		b = b[n:]
	}
	for len(b) >= 8 {
		// Four words per step; their order does not matter to a
		// ones'-complement sum.
		s += uint64(binary.BigEndian.Uint16(b[0:2])) + uint64(binary.BigEndian.Uint16(b[2:4])) +
			uint64(binary.BigEndian.Uint16(b[4:6])) + uint64(binary.BigEndian.Uint16(b[6:8]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// sum64 is the ones'-complement sum of b (a multiple of 8 bytes) as
// big-endian 16-bit words, folded to 16 bits: 0 only when b is all zeros.
// It adds little-endian 64-bit words with end-around carry and swaps the
// bytes of the folded result: ones'-complement addition commutes with
// byte order (RFC 1071 section 2(B)).
func sum64(b []byte) uint16 {
	var acc, c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	acc, c = bits.Add64(acc, 0, c)
	acc += c // acc wrapped to 0 above only if c is now 1: no further carry
	// 64 -> 32 -> 16 bits, end-around carry at each step.
	s := acc>>32 + acc&0xffffffff
	s = s>>32 + s&0xffffffff
	return bits.ReverseBytes16(fold(s))
}

// fold reduces a sum to 16 bits with end-around carry.
func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// Checksum returns the Internet checksum (RFC 1071) of b: the ones'
// complement of the ones'-complement sum of b's 16-bit big-endian words,
// plus initial (an unfolded partial sum, e.g. of a pseudo-header). Computed
// over data whose checksum field is zero, the result is the value to store;
// computed over data with a correct checksum in place, it is 0.
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold(sum(b, uint64(initial)))
}

// IPv4HeaderChecksum returns the checksum to store in the IPv4 header hdr
// (IHL*4 bytes). The current contents of the checksum field (bytes 10-11)
// are ignored, so the caller need not zero it first.
func IPv4HeaderChecksum(hdr []byte) uint16 {
	if len(hdr) < 12 {
		return Checksum(hdr, 0)
	}
	return ^fold(sum(hdr[12:], sum(hdr[:10], 0)))
}

// PseudoHeaderSum is the sum of the IPv4 (RFC 793) or IPv6 (RFC 8200
// 8.1) pseudo-header of an upper-layer packet of n bytes of protocol
// proto from src to dst, folded to 16 bits: Checksum's initial value for
// that packet.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	return uint32(fold(pseudoSum(src, dst, proto, n)))
}

// pseudoHeaderSum is the unfolded pseudo-header sum for the packet p
// describes, with an upper-layer length of l.
func pseudoHeaderSum(p *Packet, proto uint8, l int) uint64 {
	return pseudoSum(p.Src, p.Dst, proto, l)
}

func pseudoSum(src, dst netip.Addr, proto uint8, l int) uint64 {
	var s uint64
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = sum(a[:], 0)
		s = sum(b[:], s)
	} else {
		a, b := src.As16(), dst.As16()
		s = sum(a[:], 0)
		s = sum(b[:], s)
	}
	// The IPv6 length and next-header fields are 32 bits wide, but their
	// high halves are zero for Ethernet-sized packets, so both versions
	// add the same words.
	return s + uint64(proto) + uint64(l&0xffff) + uint64(l>>16)
}

// tcpSegment returns the TCP segment (header and payload, as declared by
// the IP length) that p describes in frame, or nil if p does not describe
// a parsed TCP segment that fits in frame.
func tcpSegment(p *Packet, frame []byte) []byte {
	if p.Proto != ProtoTCP || p.L4Off < 0 || (p.IPVersion != 4 && p.IPVersion != 6) {
		return nil
	}
	end := p.L3Off + p.IPTotalLen
	if end > len(frame) || p.L4Off+tcpMinHdrLen > end {
		return nil
	}
	return frame[p.L4Off:end]
}

// TCPChecksum returns the checksum to store in the TCP header of the
// segment p describes in frame (p must come from a successful Parse of
// frame, possibly followed by in-place rewrites that keep the lengths).
// The current checksum field is ignored, so callers can rewrite addresses,
// ports or sequence numbers and call this without zeroing it. The
// pseudo-header uses p.Src and p.Dst; for IPv6 with a routing header the
// real final destination would be needed, which xskgate never generates.
// It returns 0 if p does not describe a TCP segment within frame.
func TCPChecksum(p *Packet, frame []byte) uint16 {
	seg := tcpSegment(p, frame)
	if seg == nil {
		return 0
	}
	s := pseudoHeaderSum(p, ProtoTCP, len(seg))
	s = sum(seg[:16], s)
	s = sum(seg[18:], s)
	return ^fold(s)
}

// VerifyTCPChecksum reports whether the TCP checksum of the segment p
// describes in frame is correct. As in every ones'-complement verifier, a
// stored 0xffff is accepted where TCPChecksum would compute 0x0000: both
// are representations of zero.
func VerifyTCPChecksum(p *Packet, frame []byte) bool {
	seg := tcpSegment(p, frame)
	if seg == nil {
		return false
	}
	// Summing data that includes a correct checksum yields negative
	// zero (0xffff) in ones' complement.
	return fold(sum(seg, pseudoHeaderSum(p, ProtoTCP, len(seg)))) == 0xffff
}

// UpdateChecksum16 returns checksum old adjusted for a 16-bit word of the
// covered data changing from from to to, per RFC 1624 equation 3
// (HC' = ~(~HC + ~m + m')), which avoids the -0 pitfall of RFC 1141.
func UpdateChecksum16(old uint16, from, to uint16) uint16 {
	return ^fold(uint64(^old) + uint64(^from) + uint64(to))
}

// UpdateChecksum32 is UpdateChecksum16 for a 32-bit field (an IPv4 address
// or a TCP sequence number) at an even offset of the covered data.
func UpdateChecksum32(old uint16, from, to uint32) uint16 {
	return ^fold(uint64(^old) +
		uint64(^uint16(from>>16)) + uint64(^uint16(from)) +
		uint64(uint16(to>>16)) + uint64(uint16(to)))
}
