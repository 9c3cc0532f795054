package packet

import (
	"encoding/binary"
	"net/netip"
)

// TCP flag bits, as in byte 13 of the TCP header.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
	ECE = 0x40
	CWR = 0x80
)

// Bits of TCPOptions.Has.
const (
	HasMSS = 1 << iota
	HasWScale
	HasSACKPerm
	HasTimestamps
	HasSACK
)

// EtherTypes and IP protocol numbers the parser acts on.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeIPv6  = 0x86dd
	EtherTypeVLAN  = 0x8100 // 802.1Q C-tag
	EtherTypeQinQ  = 0x88a8 // 802.1ad S-tag
	ProtoICMP      = 1
	ProtoTCP       = 6
	ProtoUDP       = 17
	ProtoICMPv6    = 58
	protoHopByHop  = 0
	protoRouting   = 43
	protoFragment  = 44
	protoAH        = 51
	protoDestOpts  = 60
	ethHeaderLen   = 14
	vlanTagLen     = 4
	ipv4MinHdrLen  = 20
	ipv6HdrLen     = 40
	tcpMinHdrLen   = 20
	udpHdrLen      = 8
	icmpHdrLen     = 8 // type, code, checksum + the 32-bit field every ICMP/ICMPv6 message has
	ipv6FragHdrLen = 8
)

// Packet is a parsed view over one frame. Parse fills it in place; a worker
// reuses a single Packet for every frame so that parsing never allocates.
// All offsets are relative to the start of the frame passed to Parse.
type Packet struct {
	// L2.
	EtherType uint16    // EtherType after any VLAN tags
	VLANs     [2]uint16 // VLAN IDs (low 12 bits of the TCI), outermost first
	NumVLAN   uint8     // number of valid entries in VLANs
	L3Off     int       // offset of the IP header (or of whatever EtherType names)

	// L3.
	IPVersion   uint8      // 0 for non-IP EtherTypes (not an error), 4 or 6
	Src, Dst    netip.Addr // IPv4 or IPv6 addresses; Dst is the header's, not a routing header's final hop
	Proto       uint8      // upper-layer protocol (after the IPv6 extension chain)
	TTL         uint8      // IPv4 TTL or IPv6 hop limit
	IPHeaderLen int        // IPv4: IHL*4; IPv6: 40 + extension headers walked
	IPTotalLen  int        // IPv4 total length, IPv6 40+payload length, as declared (<= frame bytes)

	// Fragmentation (IPv4 header or IPv6 fragment header). Fragment is set
	// when more fragments follow or the offset is non-zero; an IPv6 atomic
	// fragment (offset 0, M clear) keeps Fragment false but records FragID.
	Fragment      bool
	FragOffset    uint16 // in 8-octet units, as on the wire
	MoreFragments bool
	FragID        uint32 // IPv4 identification or IPv6 fragment identification

	// L4Off is the offset of the upper-layer header, or -1 when there is
	// none to parse: non-IP, a non-first fragment, or an unknown protocol.
	L4Off int

	// L4.
	SrcPort, DstPort   uint16    // TCP and UDP only
	TCP                TCPHeader // valid when Proto == ProtoTCP and L4Off >= 0
	ICMPType, ICMPCode uint8     // ICMP (IPv4) or ICMPv6, according to IPVersion

	// PayloadOff and PayloadLen delimit the bytes after the last header
	// parsed: the TCP/UDP/ICMP payload, the fragment data, the unknown
	// upper-layer protocol, or the L3 payload of a non-IP frame. They are
	// derived from the IP (and UDP) length fields, so Ethernet padding is
	// excluded.
	PayloadOff, PayloadLen int
}

// TCPHeader holds the decoded fixed TCP header and the options xskgate
// cares about.
type TCPHeader struct {
	Seq, Ack uint32
	Flags    uint8 // FIN..CWR
	NS       bool  // RFC 3540 nonce-sum bit (byte 12, low bit)
	Window   uint16
	DataOff  int // header length in bytes (data offset * 4)
	Checksum uint16
	Urgent   uint16
	Opts     TCPOptions
}

// TCPOptions holds the decoded options; Has says which were present. When
// an option appears more than once, the last occurrence wins.
type TCPOptions struct {
	MSS          uint16
	WScale       uint8 // as sent; RFC 7323 says to clamp values > 14, which is the consumer's job
	SACKPerm     bool
	TSVal, TSEcr uint32
	Has          uint8 // HasMSS | HasWScale | HasSACKPerm | HasTimestamps | HasSACK
}

// Flow returns the source and destination address/port pairs. Ports are
// zero for protocols without ports (ICMP, fragments, unknown L4).
func (p *Packet) Flow() (src, dst netip.AddrPort) {
	return netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)
}

// Parse decodes frame into p, overwriting every field. It returns nil or one
// of the Error constants (as an error, without allocating). It never panics
// and never writes to frame.
func (p *Packet) Parse(frame []byte) error {
	*p = Packet{L4Off: -1}

	if len(frame) < ethHeaderLen {
		return ErrTruncatedEthernet
	}
	off := ethHeaderLen
	et := binary.BigEndian.Uint16(frame[12:14])
	// Accept either TPID in either position: besides the 802.1ad 0x88a8 /
	// 0x8100 pair, older QinQ gear stacks two 0x8100 tags, and we have no
	// reason to be stricter than the switch in front of us.
	for et == EtherTypeVLAN || et == EtherTypeQinQ {
		if p.NumVLAN == uint8(len(p.VLANs)) {
			return ErrTooManyVLANs
		}
		if len(frame)-off < vlanTagLen {
			return ErrTruncatedVLAN
		}
		tag := frame[off : off+vlanTagLen]
		p.VLANs[p.NumVLAN] = binary.BigEndian.Uint16(tag[0:2]) & 0x0fff
		p.NumVLAN++
		et = binary.BigEndian.Uint16(tag[2:4])
		off += vlanTagLen
	}
	p.EtherType = et
	p.L3Off = off

	switch et {
	case EtherTypeIPv4:
		return p.parseIPv4(frame, off)
	case EtherTypeIPv6:
		return p.parseIPv6(frame, off)
	}
	// Non-IP (ARP, LLDP, 802.3 length field, ...): not ours to judge.
	p.PayloadOff = off
	p.PayloadLen = len(frame) - off
	return nil
}

func (p *Packet) parseIPv4(frame []byte, off int) error {
	if len(frame)-off < ipv4MinHdrLen {
		return ErrTruncatedIPv4
	}
	h := frame[off : off+ipv4MinHdrLen]
	if h[0]>>4 != 4 {
		return ErrBadIPv4Version
	}
	hlen := int(h[0]&0x0f) * 4
	if hlen < ipv4MinHdrLen {
		return ErrBadIPv4IHL
	}
	// A total length of zero is what TSO-capable NICs hand the local stack;
	// on the wire it is simply invalid, so it falls under "too short".
	total := int(binary.BigEndian.Uint16(h[2:4]))
	if total < hlen {
		return ErrIPv4TotalLenTooShort
	}
	if total > len(frame)-off {
		return ErrIPv4TotalLenBeyondFrame
	}
	p.IPVersion = 4
	p.TTL = h[8]
	p.Proto = h[9]
	p.Src = netip.AddrFrom4([4]byte(h[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(h[16:20]))
	p.IPHeaderLen = hlen
	p.IPTotalLen = total
	p.FragID = uint32(binary.BigEndian.Uint16(h[4:6]))
	ff := binary.BigEndian.Uint16(h[6:8])
	p.MoreFragments = ff&0x2000 != 0
	p.FragOffset = ff & 0x1fff
	p.Fragment = p.MoreFragments || p.FragOffset != 0

	l4, end := off+hlen, off+total
	if p.FragOffset != 0 {
		// Only the first fragment carries the L4 header.
		p.PayloadOff, p.PayloadLen = l4, end-l4
		return nil
	}
	return p.parseL4(frame, l4, end)
}

func (p *Packet) parseIPv6(frame []byte, off int) error {
	if len(frame)-off < ipv6HdrLen {
		return ErrTruncatedIPv6
	}
	h := frame[off : off+ipv6HdrLen]
	if h[0]>>4 != 6 {
		return ErrBadIPv6Version
	}
	// Payload length 0 would mean a jumbogram (RFC 2675), which cannot
	// occur on Ethernet; it is taken literally as an empty payload.
	total := ipv6HdrLen + int(binary.BigEndian.Uint16(h[4:6]))
	if total > len(frame)-off {
		return ErrIPv6PayloadBeyondFrame
	}
	p.IPVersion = 6
	p.TTL = h[7]
	p.Src = netip.AddrFrom16([16]byte(h[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(h[24:40]))
	p.IPTotalLen = total

	end := off + total
	cur := off + ipv6HdrLen
	nh := h[6]
	sawFrag := false
	for n := 0; ; n++ {
		var hl int
		switch nh {
		case protoHopByHop, protoRouting, protoDestOpts:
			// RFC 8200 4.3: hop-by-hop may only follow the IPv6 header.
			if nh == protoHopByHop && n != 0 {
				return ErrBadExtHeader
			}
			if end-cur < 2 {
				return ErrTruncatedExtHeader
			}
			hl = (int(frame[cur+1]) + 1) * 8
		case protoAH:
			if end-cur < 2 {
				return ErrTruncatedExtHeader
			}
			// RFC 4302: length in 32-bit words minus 2; the fixed part
			// (next, len, reserved, SPI, sequence) is 12 bytes.
			hl = (int(frame[cur+1]) + 2) * 4
			if hl < 12 {
				return ErrBadExtHeader
			}
		case protoFragment:
			// Two fragment headers would make offset and ID ambiguous.
			if sawFrag {
				return ErrBadExtHeader
			}
			sawFrag = true
			hl = ipv6FragHdrLen
		default:
			p.Proto = nh
			p.IPHeaderLen = cur - off
			return p.parseL4(frame, cur, end)
		}
		if n >= MaxExtHeaders {
			return ErrTooManyExtHeaders
		}
		if end-cur < hl {
			return ErrTruncatedExtHeader
		}
		next := frame[cur]
		if nh == protoFragment {
			fh := frame[cur : cur+ipv6FragHdrLen]
			fo := binary.BigEndian.Uint16(fh[2:4])
			p.FragOffset = fo >> 3
			p.MoreFragments = fo&1 != 0
			p.FragID = binary.BigEndian.Uint32(fh[4:8])
			p.Fragment = p.MoreFragments || p.FragOffset != 0
			if p.FragOffset != 0 {
				// The rest is fragment data; the header it names lives
				// in the first fragment.
				cur += hl
				p.Proto = next
				p.IPHeaderLen = cur - off
				p.PayloadOff, p.PayloadLen = cur, end-cur
				return nil
			}
		}
		cur += hl
		nh = next
	}
}

// parseL4 decodes the upper-layer header at l4; end is the end of the IP
// packet as declared by the IP header (never beyond the frame).
func (p *Packet) parseL4(frame []byte, l4, end int) error {
	avail := end - l4
	switch {
	case p.Proto == ProtoTCP:
		if avail < tcpMinHdrLen {
			return ErrTruncatedTCP
		}
		h := frame[l4:end]
		doff := int(h[12]>>4) * 4
		if doff < tcpMinHdrLen || doff > avail {
			return ErrBadTCPDataOff
		}
		t := &p.TCP
		p.SrcPort = binary.BigEndian.Uint16(h[0:2])
		p.DstPort = binary.BigEndian.Uint16(h[2:4])
		t.Seq = binary.BigEndian.Uint32(h[4:8])
		t.Ack = binary.BigEndian.Uint32(h[8:12])
		t.NS = h[12]&1 != 0
		t.Flags = h[13]
		t.Window = binary.BigEndian.Uint16(h[14:16])
		t.Checksum = binary.BigEndian.Uint16(h[16:18])
		t.Urgent = binary.BigEndian.Uint16(h[18:20])
		t.DataOff = doff
		if doff > tcpMinHdrLen {
			if err := t.Opts.parse(h[tcpMinHdrLen:doff]); err != nil {
				return err
			}
		}
		p.L4Off = l4
		p.PayloadOff, p.PayloadLen = l4+doff, avail-doff
		return nil

	case p.Proto == ProtoUDP:
		if avail < udpHdrLen {
			return ErrTruncatedUDP
		}
		h := frame[l4 : l4+udpHdrLen]
		// Length 0 is an IPv6 jumbogram (RFC 2675), impossible here.
		// A UDP length shorter than the IP payload is legal; the excess
		// is ignored, as Linux does.
		ulen := int(binary.BigEndian.Uint16(h[4:6]))
		if ulen < udpHdrLen || ulen > avail {
			return ErrBadUDPLen
		}
		p.SrcPort = binary.BigEndian.Uint16(h[0:2])
		p.DstPort = binary.BigEndian.Uint16(h[2:4])
		p.L4Off = l4
		p.PayloadOff, p.PayloadLen = l4+udpHdrLen, ulen-udpHdrLen
		return nil

	case p.Proto == ProtoICMP && p.IPVersion == 4,
		p.Proto == ProtoICMPv6 && p.IPVersion == 6:
		if avail < icmpHdrLen {
			return ErrTruncatedICMP
		}
		p.ICMPType = frame[l4]
		p.ICMPCode = frame[l4+1]
		p.L4Off = l4
		p.PayloadOff, p.PayloadLen = l4+icmpHdrLen, avail-icmpHdrLen
		return nil
	}
	// Unknown upper layer (ESP, GRE, SCTP, ...): not an error.
	p.PayloadOff, p.PayloadLen = l4, avail
	return nil
}

// parse walks the TCP option area b (header bytes 20..DataOff) exactly.
func (o *TCPOptions) parse(b []byte) error {
	for i := 0; i < len(b); {
		kind := b[i]
		switch kind {
		case 0: // EOL: the rest is padding
			return nil
		case 1: // NOP
			i++
			continue
		}
		if len(b)-i < 2 {
			return ErrBadTCPOption
		}
		l := int(b[i+1])
		if l < 2 || l > len(b)-i {
			return ErrBadTCPOption
		}
		opt := b[i : i+l]
		switch kind {
		case 2:
			if l != 4 {
				return ErrBadTCPOption
			}
			o.MSS = binary.BigEndian.Uint16(opt[2:4])
			o.Has |= HasMSS
		case 3:
			if l != 3 {
				return ErrBadTCPOption
			}
			o.WScale = opt[2]
			o.Has |= HasWScale
		case 4:
			if l != 2 {
				return ErrBadTCPOption
			}
			o.SACKPerm = true
			o.Has |= HasSACKPerm
		case 5:
			if l < 10 || (l-2)%8 != 0 {
				return ErrBadTCPOption
			}
			o.Has |= HasSACK
		case 8:
			if l != 10 {
				return ErrBadTCPOption
			}
			o.TSVal = binary.BigEndian.Uint32(opt[2:6])
			o.TSEcr = binary.BigEndian.Uint32(opt[6:10])
			o.Has |= HasTimestamps
		}
		i += l
	}
	return nil
}
