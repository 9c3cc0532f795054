package packet

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseValid(t *testing.T) {
	ipA4, ipB4 := netip.MustParseAddr("198.19.2.1"), netip.MustParseAddr("198.19.100.7")
	ipA6, ipB6 := netip.MustParseAddr("2001:2:db8::1"), netip.MustParseAddr("2001:2:ffff::2")
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
		// oracleSkip is set for rows where gopacket legitimately decodes
		// less than we do; the reason must match.
		oracleSkip string
		check      func(t *testing.T, p *Packet, frame []byte)
	}{
		{"ipv4 tcp syn all options", frameIPv4TCPSYN, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.EtherType, EtherTypeIPv4, p.IPVersion, 4, p.L3Off, 14, p.IPHeaderLen, 20)
			want(t, p.Src, ipA4, p.Dst, ipB4, p.Proto, ProtoTCP, p.TTL, 64, p.FragID, 0x1234, p.Fragment, false)
			want(t, p.L4Off, 34, p.SrcPort, 40000, p.DstPort, 443, p.TCP.Seq, 0x11223344, p.TCP.Flags, SYN|ECE|CWR)
			want(t, p.TCP.Window, 64240, p.TCP.DataOff, 56, p.PayloadOff, 90, p.PayloadLen, 0)
			want(t, p.TCP.Opts, TCPOptions{MSS: 1460, WScale: 7, SACKPerm: true, TSVal: 0xdeadbeef, TSEcr: 0x01020304,
				Has: HasMSS | HasWScale | HasSACKPerm | HasTimestamps | HasSACK})
			src, dst := p.Flow()
			want(t, src, netip.MustParseAddrPort("198.19.2.1:40000"), dst, netip.MustParseAddrPort("198.19.100.7:443"))
		}},
		{"ipv6 tcp ack", frameIPv6TCPACK, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.IPVersion, 6, p.Src, ipA6, p.Dst, ipB6, p.TTL, 57, p.IPHeaderLen, 40, p.L4Off, 54)
			want(t, p.TCP.Flags, ACK|PSH, p.TCP.Ack, 0x0badcafe, p.TCP.DataOff, 32, p.PayloadLen, 18)
			want(t, p.TCP.Opts, TCPOptions{TSVal: 100, TSEcr: 200, Has: HasTimestamps})
			want(t, string(f[p.PayloadOff:p.PayloadOff+p.PayloadLen]), "GET / HTTP/1.1\r\n\r\n")
		}},
		{"802.1Q ipv4 udp", frameVLAN, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.NumVLAN, 1, p.VLANs[0], 100, p.L3Off, 18, p.EtherType, EtherTypeIPv4, p.Proto, ProtoUDP)
			want(t, p.SrcPort, 40001, p.DstPort, 9999, p.PayloadLen, 4, p.L4Off, 38)
		}},
		{"QinQ ipv6 tcp", frameQinQ, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.NumVLAN, 2, p.VLANs, [2]uint16{3000, 42}, p.L3Off, 22, p.IPVersion, 6, p.L4Off, 62)
		}},
		{"ipv4 udp", frameIPv4UDP, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.Proto, ProtoUDP, p.SrcPort, 40001, p.PayloadOff, 42, p.PayloadLen, 20, p.IPTotalLen, 48)
		}},
		{"ipv6 udp", frameIPv6UDP, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.Proto, ProtoUDP, p.IPVersion, 6, p.PayloadOff, 62, p.PayloadLen, 3)
		}},
		{"icmp echo", frameICMPEcho, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.Proto, ProtoICMP, p.ICMPType, 8, p.ICMPCode, 0, p.L4Off, 34, p.PayloadLen, 4, p.SrcPort, 0)
		}},
		{"icmpv6 echo", frameICMPv6Echo, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.Proto, ProtoICMPv6, p.ICMPType, 128, p.L4Off, 54, p.PayloadLen, 5)
		}},
		{"icmpv6 neighbor solicitation", frameICMPv6ND, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.Proto, ProtoICMPv6, p.ICMPType, 135, p.TTL, 255, p.PayloadLen, 16+8)
		}},
		{"arp", frameARP, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.EtherType, 0x0806, p.IPVersion, 0, p.L4Off, -1, p.Src.IsValid(), false, p.PayloadOff, 14)
		}},
		{"ipv4 options ihl 6", frameIPv4Options, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.IPHeaderLen, 24, p.L4Off, 38, p.Proto, ProtoTCP, p.PayloadLen, 4, p.TCP.DataOff, 32)
		}},
		{"ipv4 first fragment", frameIPv4FirstFragTCP, "gopacket does not decode L4 in a first fragment",
			func(t *testing.T, p *Packet, f []byte) {
				want(t, p.Fragment, true, p.MoreFragments, true, p.FragOffset, 0, p.FragID, 0xabcd)
				want(t, p.L4Off, 34, p.DstPort, 80, p.PayloadLen, 10)
			}},
		{"ipv4 later fragment", frameIPv4LaterFrag, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.Fragment, true, p.MoreFragments, false, p.FragOffset, 185, p.L4Off, -1, p.SrcPort, 0)
			want(t, p.Proto, ProtoTCP, p.PayloadOff, 34, p.PayloadLen, 31)
		}},
		// gopacket's decodeIPv6Fragment hands even an atomic fragment to
		// DecodeFragment, so it stops there.
		{"ipv6 hop-by-hop + dstopts + atomic fragment", frameIPv6ExtChain, "gopacket does not decode L4 in a first fragment", func(t *testing.T, p *Packet, f []byte) {
			// 40 + HBH 8 + DstOpts 16 + Frag 8.
			want(t, p.IPHeaderLen, 72, p.L4Off, 14+72, p.Proto, ProtoUDP, p.Fragment, false, p.FragID, 0x55667788)
			want(t, p.DstPort, 9999, p.PayloadLen, 6)
		}},
		{"ipv6 first fragment", frameIPv6FirstFrag, "gopacket does not decode L4 in a first fragment",
			func(t *testing.T, p *Packet, f []byte) {
				want(t, p.Fragment, true, p.MoreFragments, true, p.FragID, 77, p.Proto, ProtoTCP, p.L4Off, 14+48)
				want(t, p.TCP.Seq, 0xfffffff0, p.PayloadLen, 5)
			}},
		{"ipv6 later fragment", frameIPv6LaterFrag, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, p.Fragment, true, p.FragOffset, 100, p.L4Off, -1, p.Proto, ProtoTCP, p.IPHeaderLen, 48)
			want(t, p.PayloadOff, 62, p.PayloadLen, 19)
		}},
		{"ethernet padding", framePadded, "", func(t *testing.T, p *Packet, f []byte) {
			want(t, len(f), 60, p.IPTotalLen, 40, p.PayloadOff, 54, p.PayloadLen, 0, p.TCP.Flags, RST)
			want(t, VerifyTCPChecksum(p, f), true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := tt.frame(t)
			var p Packet
			err := p.Parse(frame)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkInvariants(t, frame, &p, err)
			tt.check(t, &p, frame)
			if skip := compareWithGopacket(t, frame, &p, err); skip != tt.oracleSkip {
				t.Errorf("oracle comparison skipped with %q, want %q", skip, tt.oracleSkip)
			}
			if p.Proto == ProtoTCP && p.L4Off >= 0 && !VerifyTCPChecksum(&p, frame) {
				t.Errorf("TCP checksum of a gopacket-built frame does not verify")
			}
		})
	}
}

// want compares got/want pairs: want(t, got1, want1, got2, want2, ...).
// Untyped constants on the want side are converted to the got side's type.
func want(t *testing.T, pairs ...any) {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		got, exp := pairs[i], pairs[i+1]
		if !sameValue(got, exp) {
			t.Errorf("pair %d: got %v (%T), want %v (%T)", i/2, got, got, exp, exp)
		}
	}
}

func sameValue(got, exp any) bool {
	if ei, ok := exp.(int); ok {
		switch g := got.(type) {
		case uint8:
			return int(g) == ei
		case uint16:
			return int(g) == ei
		case uint32:
			return int64(g) == int64(ei)
		case int:
			return g == ei
		}
	}
	return got == exp
}

type errorCase struct {
	name  string
	frame []byte
	want  Error
}

// errorCases has at least one crafted frame per Error constant.
func errorCases(t testing.TB) []errorCase {
	syn := frameIPv4TCPSYN(t) // L3 at 14, TCP at 34, options 54..90, total length 76
	ack6 := frameIPv6TCPACK(t)
	udp4 := frameIPv4UDP(t)
	icmp4 := frameICMPEcho(t)
	icmp6 := frameICMPv6Echo(t)

	return []errorCase{
		{"empty", nil, ErrTruncatedEthernet},
		{"13 bytes", syn[:13], ErrTruncatedEthernet},
		{"vlan tag cut", ethHdr(0x8100, 0x00, 0x64), ErrTruncatedVLAN},
		{"qinq inner tag cut", ethHdr(0x88a8, 0, 1, 0x81, 0x00, 0), ErrTruncatedVLAN},
		{"three vlan tags", ethHdr(0x88a8, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x08, 0), ErrTooManyVLANs},
		{"ipv4 19 bytes", syn[:14+19], ErrTruncatedIPv4},
		{"ipv4 version 6", set(syn, 14, 0x65), ErrBadIPv4Version},
		{"ipv4 ihl 4", set(syn, 14, 0x44), ErrBadIPv4IHL},
		{"ipv4 ihl 0", set(syn, 14, 0x40), ErrBadIPv4IHL},
		{"ipv4 total len 19", set(syn, 16, 0, 19), ErrIPv4TotalLenTooShort},
		{"ipv4 total len 0", set(syn, 16, 0, 0), ErrIPv4TotalLenTooShort},
		{"ipv4 ihl 15 > total len", set(set(syn, 14, 0x4f), 16, 0, 40), ErrIPv4TotalLenTooShort},
		{"ipv4 total len beyond frame", set(syn, 16, 0, 77), ErrIPv4TotalLenBeyondFrame},
		{"ipv4 frame cut", syn[:len(syn)-1], ErrIPv4TotalLenBeyondFrame},
		{"ipv6 39 bytes", ack6[:14+39], ErrTruncatedIPv6},
		{"ipv6 version 4", set(ack6, 14, 0x40), ErrBadIPv6Version},
		{"ipv6 payload beyond frame", set(ack6, 18, 0, 51), ErrIPv6PayloadBeyondFrame},
		{"ipv6 hbh beyond payload", ipv6Ext(0, []byte{6, 1, 1, 4, 0, 0, 0, 0}), ErrTruncatedExtHeader},
		{"ipv6 ext header 1 byte", ipv6Ext(60, []byte{6}), ErrTruncatedExtHeader},
		{"ipv6 fragment header cut", ipv6Ext(44, []byte{6, 0, 0, 0, 0, 0, 0}), ErrTruncatedExtHeader},
		{"ipv6 hbh not first", ipv6Ext(60, []byte{0, 0, 1, 4, 0, 0, 0, 0, 59, 0, 1, 4, 0, 0, 0, 0}), ErrBadExtHeader},
		{"ipv6 two fragment headers", ipv6Ext(44, []byte{44, 0, 0, 1, 0, 0, 0, 1, 59, 0, 0, 1, 0, 0, 0, 1}), ErrBadExtHeader},
		{"ipv6 ah too short", ipv6Ext(51, []byte{59, 0, 0, 0, 0, 0, 0, 0}), ErrBadExtHeader},
		{"ipv6 nine ext headers", ipv6Ext(60, destOptsChain(9)), ErrTooManyExtHeaders},
		{"tcp 19 bytes", ipv4L4(6, make([]byte, 19)), ErrTruncatedTCP},
		{"ipv6 first fragment without room for tcp", ipv6Ext(44, []byte{6, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4}), ErrTruncatedTCP},
		{"ipv4 first fragment without room for tcp", set(ipv4L4(6, make([]byte, 12)), 20, 0x20), ErrTruncatedTCP},
		{"tcp data offset 4", set(syn, 46, 0x40), ErrBadTCPDataOff},
		{"tcp data offset beyond ip payload", set(syn, 46, 0xf0), ErrBadTCPDataOff},
		{"tcp data offset beyond ip total len with frame bytes", set(syn, 16, 0, 70), ErrBadTCPDataOff},
		{"tcp mss len 3", tcpOpts(2, 3, 0, 1), ErrBadTCPOption},
		{"tcp wscale len 4", tcpOpts(3, 4, 7, 1), ErrBadTCPOption},
		{"tcp sackperm len 3", tcpOpts(4, 3, 0, 1), ErrBadTCPOption},
		{"tcp timestamps len 8", tcpOpts(8, 8, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1), ErrBadTCPOption},
		{"tcp sack len 9", tcpOpts(5, 9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1), ErrBadTCPOption},
		{"tcp sack len 2", tcpOpts(5, 2, 1, 1), ErrBadTCPOption},
		{"tcp option len 1", tcpOpts(99, 1, 1, 1), ErrBadTCPOption},
		{"tcp option len 0", tcpOpts(99, 0, 1, 1), ErrBadTCPOption},
		{"tcp option beyond header", tcpOpts(1, 1, 99, 4), ErrBadTCPOption},
		{"tcp option kind without length", tcpOpts(1, 1, 1, 2), ErrBadTCPOption},
		{"udp 7 bytes", ipv4L4(17, make([]byte, 7)), ErrTruncatedUDP},
		{"udp len 7", set(udp4, 38, 0, 7), ErrBadUDPLen},
		{"udp len 0", set(udp4, 38, 0, 0), ErrBadUDPLen},
		{"udp len beyond ip payload", set(udp4, 38, 0, 29), ErrBadUDPLen},
		{"icmp 7 bytes", set(icmp4[:14+27], 16, 0, 27), ErrTruncatedICMP},
		{"icmpv6 4 bytes", set(icmp6[:14+44], 18, 0, 4), ErrTruncatedICMP},
	}
}

func TestParseErrors(t *testing.T) {
	tests := errorCases(t)
	seen := map[Error]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := p.Parse(tt.frame)
			if err != tt.want { //nolint:errorlint // Error is a comparable value type
				t.Fatalf("Parse = %v, want %v\nframe %x", err, tt.want, tt.frame)
			}
			var e Error
			if !errors.As(err, &e) || e.Name() != ErrorName(tt.want) {
				t.Fatalf("errors.As / Name mismatch")
			}
			checkInvariants(t, tt.frame, &p, err)
			compareWithGopacket(t, tt.frame, &p, err)
		})
		seen[tt.want] = true
	}
	for e := Error(1); e < NumErrors; e++ {
		if !seen[e] {
			t.Errorf("no test row for %v (%s)", e, e.Name())
		}
	}
}

func TestErrorNames(t *testing.T) {
	names := map[string]bool{}
	for e := Error(1); e < NumErrors; e++ {
		n := ErrorName(e)
		if n == "" || n == "unknown" || names[n] {
			t.Errorf("Error %d: bad or duplicate name %q", e, n)
		}
		names[n] = true
		if e.Error() == "" || e.Error() == Error(0).Error() {
			t.Errorf("Error %d: bad message %q", e, e.Error())
		}
	}
	want(t, ErrBadIPv4IHL.Name(), "bad_ipv4_ihl", ErrTruncatedEthernet.Name(), "truncated_ethernet",
		ErrorName(0), "unknown", ErrorName(NumErrors), "unknown")
}

// set returns a copy of b with vals written from offset off.
func set(b []byte, off int, vals ...byte) []byte {
	c := append([]byte(nil), b...)
	copy(c[off:], vals)
	return c
}

// ethHdr returns an Ethernet header with the given EtherType followed by rest.
func ethHdr(etherType uint16, rest ...byte) []byte {
	b := append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, byte(etherType >> 8), byte(etherType)}, rest...)
	return b
}

// ipv4L4 returns an IPv4 frame (IHL 5) whose payload is l4, with a correct
// total length and header checksum.
func ipv4L4(proto byte, l4 []byte) []byte {
	total := 20 + len(l4)
	ip := []byte{0x45, 0, byte(total >> 8), byte(total), 0, 1, 0, 0, 64, proto, 0, 0, 198, 19, 2, 1, 198, 19, 100, 7}
	c := IPv4HeaderChecksum(ip)
	ip[10], ip[11] = byte(c>>8), byte(c)
	return append(ethHdr(EtherTypeIPv4, ip...), l4...)
}

// ipv6Ext returns an IPv6 frame with next header nh whose payload is ext.
func ipv6Ext(nh byte, ext []byte) []byte {
	ip := make([]byte, 40, 40+len(ext))
	ip[0] = 0x60
	ip[4], ip[5] = byte(len(ext)>>8), byte(len(ext))
	ip[6], ip[7] = nh, 64
	ip[8], ip[9], ip[23] = 0x20, 0x01, 1
	ip[24], ip[25], ip[39] = 0x20, 0x01, 2
	return ethHdr(EtherTypeIPv6, append(ip, ext...)...)
}

// destOptsChain returns n 8-byte destination-options headers (each holding
// one PadN option) chained together, the last naming "no next header".
func destOptsChain(n int) []byte {
	var b []byte
	for i := range n {
		next := byte(60)
		if i == n-1 {
			next = 59
		}
		b = append(b, next, 0, 1, 4, 0, 0, 0, 0)
	}
	return b
}

// tcpOpts returns an IPv4 TCP frame whose option area holds opts, padded
// with EOL to a multiple of 4.
func tcpOpts(opts ...byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	h := make([]byte, 20, 20+len(opts))
	h[0], h[1], h[2], h[3] = 0x9c, 0x40, 0x01, 0xbb
	h[12] = byte((20+len(opts))/4) << 4
	h[13] = SYN
	return ipv4L4(ProtoTCP, append(h, opts...))
}
