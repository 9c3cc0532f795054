package packet

import (
	"encoding/binary"
	"net/netip"
)

// ICMP and ICMPv6 error types: their body quotes the packet that caused
// them (the invoking packet), after the 8-byte ICMP header.
const (
	ICMPDestUnreachable   = 3  // code 4: fragmentation needed (PMTUD, RFC 1191)
	ICMPTimeExceeded      = 11 // RFC 792
	ICMPParamProblem      = 12
	ICMPv6DestUnreachable = 1 // RFC 4443
	ICMPv6PacketTooBig    = 2 // PMTUD, RFC 8201
	ICMPv6TimeExceeded    = 3
	ICMPv6ParamProblem    = 4
)

// IsICMPError reports whether p is an ICMP (IPv4) or ICMPv6 error message,
// whose body quotes an invoking packet (Quoted). Informational messages
// (echo, neighbour discovery) are not.
func (p *Packet) IsICMPError() bool {
	if p.L4Off < 0 {
		return false
	}
	switch {
	case p.IPVersion == 4 && p.Proto == ProtoICMP:
		return p.ICMPType == ICMPDestUnreachable || p.ICMPType == ICMPTimeExceeded || p.ICMPType == ICMPParamProblem
	case p.IPVersion == 6 && p.Proto == ProtoICMPv6:
		return p.ICMPType >= ICMPv6DestUnreachable && p.ICMPType <= ICMPv6ParamProblem
	}
	return false
}

// Quoted is a parsed view of the invoking packet an ICMP error carries: its
// IP header, complete, and what the router kept of the rest (RFC 792: at
// least 8 bytes; RFC 1812 and RFC 4443: as much as fits, so usually the
// whole TCP header). Offsets are relative to the quote (the ICMP body after
// its 8-byte header). The quoted packet's own length fields describe the
// packet as it was sent and are not checked against the quote.
type Quoted struct {
	IPVersion   uint8
	Src, Dst    netip.Addr
	Proto       uint8
	IPHeaderLen int // IPv4: IHL*4; IPv6: 40 + the extension headers walked
	// L4Off is the offset of the quoted upper-layer header, L4Len how many
	// of its bytes (and its payload's) the quote holds; L4Off is -1 for a
	// non-first fragment, which quotes no upper-layer header.
	L4Off, L4Len     int
	SrcPort, DstPort uint16 // TCP and UDP, when L4Len >= 4
}

// Parse decodes the invoking packet quoted in b, which must be of IP
// version ipVersion (an ICMPv4 error quotes IPv4, ICMPv6 quotes IPv6). It
// reports false when b holds no complete IP header of that version (and
// its extension headers) or, for TCP and UDP, not the 4 bytes of ports; q
// is then not to be used. It never panics and never writes to b.
func (q *Quoted) Parse(b []byte, ipVersion uint8) bool {
	*q = Quoted{L4Off: -1}
	switch ipVersion {
	case 4:
		if len(b) < ipv4MinHdrLen || b[0]>>4 != 4 {
			return false
		}
		hl := int(b[0]&0x0f) * 4
		if hl < ipv4MinHdrLen || hl > len(b) {
			return false
		}
		q.IPVersion, q.Proto, q.IPHeaderLen = 4, b[9], hl
		q.Src = netip.AddrFrom4([4]byte(b[12:16]))
		q.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return true // a later fragment: no upper-layer header
		}
		return q.l4(b, hl)
	case 6:
		if len(b) < ipv6HdrLen || b[0]>>4 != 6 {
			return false
		}
		q.IPVersion = 6
		q.Src = netip.AddrFrom16([16]byte(b[8:24]))
		q.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		off, nh := ipv6HdrLen, b[6]
		// The extension headers as Parse walks them (RFC 8200 4.1).
		for n := 0; ; n++ {
			var hl int
			switch nh {
			case protoHopByHop, protoRouting, protoDestOpts:
				if nh == protoHopByHop && n != 0 || len(b)-off < 2 {
					return false
				}
				hl = (int(b[off+1]) + 1) * 8
			case protoAH:
				if len(b)-off < 2 {
					return false
				}
				if hl = (int(b[off+1]) + 2) * 4; hl < 12 {
					return false
				}
			case protoFragment:
				if len(b)-off < ipv6FragHdrLen {
					return false
				}
				hl = ipv6FragHdrLen
				if binary.BigEndian.Uint16(b[off+2:off+4])>>3 != 0 {
					q.Proto, q.IPHeaderLen = b[off], off+hl
					return true // a later fragment
				}
			default:
				q.Proto, q.IPHeaderLen = nh, off
				return q.l4(b, off)
			}
			if n >= MaxExtHeaders || len(b)-off < hl {
				return false
			}
			nh = b[off]
			off += hl
		}
	}
	return false
}

// l4 records the quoted upper-layer header at off.
func (q *Quoted) l4(b []byte, off int) bool {
	q.L4Off, q.L4Len = off, len(b)-off
	if q.Proto == ProtoTCP || q.Proto == ProtoUDP {
		if q.L4Len < 4 {
			return false
		}
		q.SrcPort = binary.BigEndian.Uint16(b[off:])
		q.DstPort = binary.BigEndian.Uint16(b[off+2:])
	}
	return true
}
