package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// checkInvariants asserts what Parse promises for any input: a declared
// Error on failure, and mutually consistent in-bounds offsets on success.
func checkInvariants(t *testing.T, frame []byte, p *Packet, err error) {
	t.Helper()
	if err != nil {
		e, ok := err.(Error)
		if !ok || e == 0 || e >= NumErrors {
			t.Fatalf("Parse returned %T %v, not a declared Error", err, err)
		}
		return
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("invariant: "+format+"\npacket: %+v\nframe: %x", append(args, *p, frame)...)
	}
	if p.NumVLAN > 2 || p.L3Off != ethHeaderLen+vlanTagLen*int(p.NumVLAN) || p.L3Off > len(frame) {
		fail("L3Off %d with %d VLANs, frame %d", p.L3Off, p.NumVLAN, len(frame))
	}
	if p.IPVersion == 0 {
		if p.L4Off != -1 || p.PayloadOff != p.L3Off || p.PayloadOff+p.PayloadLen != len(frame) || p.Src.IsValid() {
			fail("non-IP packet with L3/L4 state")
		}
		if p.EtherType == EtherTypeIPv4 || p.EtherType == EtherTypeIPv6 {
			fail("IP EtherType but IPVersion 0")
		}
		return
	}
	ipEnd := p.L3Off + p.IPTotalLen
	switch {
	case p.IPVersion == 4 && (!p.Src.Is4() || !p.Dst.Is4() || p.IPHeaderLen < 20 || p.IPHeaderLen > 60):
		fail("bad IPv4 state")
	case p.IPVersion == 6 && (!p.Src.Is6() || !p.Dst.Is6() || p.IPHeaderLen < 40):
		fail("bad IPv6 state")
	case p.IPVersion != 4 && p.IPVersion != 6:
		fail("IPVersion %d", p.IPVersion)
	}
	if p.L3Off >= len(frame) || ipEnd > len(frame) || p.L3Off+p.IPHeaderLen > ipEnd {
		fail("IP lengths out of frame: ipEnd %d", ipEnd)
	}
	if p.Fragment != (p.MoreFragments || p.FragOffset != 0) {
		fail("Fragment flag inconsistent")
	}
	if p.FragOffset != 0 && p.L4Off != -1 {
		fail("non-first fragment with L4")
	}
	if p.PayloadLen < 0 || p.PayloadOff < p.L3Off+p.IPHeaderLen || p.PayloadOff+p.PayloadLen > ipEnd {
		fail("payload [%d,+%d) outside IP packet ending at %d", p.PayloadOff, p.PayloadLen, ipEnd)
	}
	if p.L4Off < 0 {
		if p.L4Off != -1 || p.SrcPort != 0 || p.DstPort != 0 || p.TCP != (TCPHeader{}) {
			fail("L4 state without L4Off")
		}
		return
	}
	if p.L4Off != p.L3Off+p.IPHeaderLen {
		fail("L4Off %d != L3Off+IPHeaderLen", p.L4Off)
	}
	var hdr int
	switch p.Proto {
	case ProtoTCP:
		hdr = p.TCP.DataOff
		if hdr < 20 || hdr > 60 || hdr%4 != 0 {
			fail("TCP DataOff %d", hdr)
		}
	case ProtoUDP:
		hdr = udpHdrLen
	case ProtoICMP, ProtoICMPv6:
		hdr = icmpHdrLen
	default:
		fail("L4Off set for protocol %d", p.Proto)
	}
	if p.L4Off+hdr > ipEnd || p.PayloadOff != p.L4Off+hdr {
		fail("L4 header [%d,+%d) vs ipEnd %d, PayloadOff %d", p.L4Off, hdr, ipEnd, p.PayloadOff)
	}
}

// compareWithGopacket decodes frame with gopacket as an oracle and compares
// the result with ours (p, err from Parse). It fails t on a real
// disagreement and returns a non-empty reason when the two legitimately
// differ, so callers can skip explicitly. Known, accepted differences:
//
//   - gopacket is more lenient: it accepts an IPv4 total length of 0 (TSO),
//     does not check IP version nibbles, has no VLAN or extension-header
//     depth limit, does not enforce RFC 8200 header ordering, treats UDP
//     length 0 as a jumbogram, needs only 4 bytes of ICMPv6, silently stops
//     at malformed TCP options and does not check the lengths of known kinds.
//   - gopacket does not decode past a fragment header (IPv4 MF or IPv6),
//     while we decode the L4 header of a first fragment (and reject it if
//     it does not fit).
//   - gopacket finds IP inside EtherTypes we treat as non-IP (MPLS,
//     PPPoE, and 0xffff, its private marker for raw IP).
//   - gopacket silently stops decoding when a layer leaves an empty
//     payload (e.g. EtherType IPv4 with no bytes after it).
//   - gopacket is stricter in places we deliberately do not look: IPv4
//     options, hop-by-hop jumbogram rules, and every application-layer
//     decoder it runs on payloads.
func compareWithGopacket(t *testing.T, frame []byte, p *Packet, err error) (skip string) {
	t.Helper()
	gp := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
	gpErr := gp.ErrorLayer()
	if err != nil {
		if gpErr != nil || gp.Metadata().Truncated {
			return "" // both reject (gopacket by error or by truncation)
		}
		if reason := allowedStricter(err.(Error), frame, p, gp); reason != "" {
			return reason
		}
		t.Fatalf("we reject with %v, gopacket accepts:\n%s", err, gp.Dump())
		return ""
	}

	// For us a non-IP EtherType ends parsing. gopacket looks inside some
	// (MPLS, PPPoE, its private 0xffff "raw IP") and may find IP there.
	if p.IPVersion == 0 && gp.NetworkLayer() != nil {
		return fmt.Sprintf("gopacket decodes IP inside EtherType %#04x", p.EtherType)
	}

	// Compare every layer gopacket decoded successfully. When decoding
	// failed, the last layer before the failure may be half-decoded (some
	// decoders add the layer before checking for errors), so skip it.
	ls := gp.Layers()
	if gpErr != nil {
		ls = ls[:len(ls)-1] // the DecodeFailure layer
		if len(ls) > 0 {
			ls = ls[:len(ls)-1]
		}
	}
	vlans, sawL4, sawIP := 0, false, false
layerLoop:
	for _, l := range ls {
		switch l.(type) {
		case *layers.IPv4, *layers.IPv6:
			if sawIP {
				// IP-in-IP: gopacket decodes the tunnelled packet, we
				// stop at the outer header (unknown L4).
				break layerLoop
			}
			sawIP = true
		}
		switch l := l.(type) {
		case *layers.Dot1Q:
			if vlans < int(p.NumVLAN) && l.VLANIdentifier != p.VLANs[vlans] {
				t.Errorf("VLAN %d: gopacket %d, ours %d", vlans, l.VLANIdentifier, p.VLANs[vlans])
			}
			vlans++
		case *layers.IPv4:
			eq(t, "IPVersion", p.IPVersion, 4)
			eq(t, "Src", p.Src, addr(l.SrcIP))
			eq(t, "Dst", p.Dst, addr(l.DstIP))
			eq(t, "TTL", p.TTL, l.TTL)
			eq(t, "Proto", p.Proto, uint8(l.Protocol))
			eq(t, "IPHeaderLen", p.IPHeaderLen, int(l.IHL)*4)
			eq(t, "IPTotalLen", p.IPTotalLen, int(l.Length))
			eq(t, "FragOffset", p.FragOffset, l.FragOffset)
			eq(t, "MoreFragments", p.MoreFragments, l.Flags&layers.IPv4MoreFragments != 0)
			eq(t, "FragID", p.FragID, uint32(l.Id))
		case *layers.IPv6:
			eq(t, "IPVersion", p.IPVersion, 6)
			eq(t, "Src", p.Src, addr(l.SrcIP))
			eq(t, "Dst", p.Dst, addr(l.DstIP))
			eq(t, "TTL", p.TTL, l.HopLimit)
			eq(t, "IPTotalLen", p.IPTotalLen, 40+int(l.Length))
		case *layers.IPv6Fragment:
			eq(t, "FragOffset", p.FragOffset, l.FragmentOffset)
			eq(t, "MoreFragments", p.MoreFragments, l.MoreFragments)
			eq(t, "FragID", p.FragID, l.Identification)
		case *layers.TCP:
			sawL4 = true
			if p.Proto != ProtoTCP || p.L4Off < 0 {
				t.Fatalf("gopacket decoded TCP, we have proto %d L4Off %d", p.Proto, p.L4Off)
			}
			compareTCP(t, p, l)
		case *layers.UDP:
			sawL4 = true
			if p.Proto != ProtoUDP || p.L4Off < 0 {
				t.Fatalf("gopacket decoded UDP, we have proto %d L4Off %d", p.Proto, p.L4Off)
			}
			eq(t, "SrcPort", p.SrcPort, uint16(l.SrcPort))
			eq(t, "DstPort", p.DstPort, uint16(l.DstPort))
			eq(t, "PayloadLen", p.PayloadLen, int(l.Length)-8)
		case *layers.ICMPv4:
			// gopacket decodes protocol 1 even inside IPv6; we only
			// treat it as ICMP in IPv4.
			if p.IPVersion == 4 {
				sawL4 = true
				eq(t, "ICMPType", p.ICMPType, l.TypeCode.Type())
				eq(t, "ICMPCode", p.ICMPCode, l.TypeCode.Code())
			}
		case *layers.ICMPv6:
			if p.IPVersion == 6 {
				sawL4 = true
				eq(t, "ICMPType", p.ICMPType, l.TypeCode.Type())
				eq(t, "ICMPCode", p.ICMPCode, l.TypeCode.Code())
			}
		}
	}
	if vlans != int(p.NumVLAN) && gpErr == nil {
		t.Errorf("gopacket saw %d VLAN tags, we saw %d", vlans, p.NumVLAN)
	}
	if p.L4Off >= 0 && !sawL4 {
		switch {
		case gp.Layer(gopacket.LayerTypeFragment) != nil:
			return "gopacket does not decode L4 in a first fragment"
		case gpErr != nil:
			return fmt.Sprintf("gopacket stricter before L4: %v", gpErr.Error())
		default:
			t.Fatalf("we decoded L4 proto %d, gopacket did not:\n%s", p.Proto, gp.Dump())
		}
	}
	return ""
}

// allowedStricter returns why rejecting frame with e is acceptable although
// gopacket decodes it without error or truncation, or "" if it is not.
func allowedStricter(e Error, frame []byte, p *Packet, gp gopacket.Packet) string {
	// Any L4 or extension-header complaint after a fragment header:
	// gopacket stops there.
	if p.Fragment || gp.Layer(gopacket.LayerTypeFragment) != nil {
		switch e {
		case ErrTruncatedExtHeader, ErrBadExtHeader, ErrTooManyExtHeaders,
			ErrTruncatedTCP, ErrBadTCPDataOff, ErrBadTCPOption,
			ErrTruncatedUDP, ErrBadUDPLen, ErrTruncatedICMP:
			return "gopacket does not decode past a fragment header"
		}
	}
	// gopacket stops decoding, without error, when a layer leaves no
	// payload; we require the next header to be there.
	if ls := gp.Layers(); len(ls) > 0 && len(ls[len(ls)-1].LayerPayload()) == 0 {
		switch ls[len(ls)-1].LayerType() {
		case layers.LayerTypeTCP, layers.LayerTypeUDP, layers.LayerTypeICMPv4, layers.LayerTypeICMPv6:
		default:
			return "gopacket stops at an empty payload"
		}
	}
	switch e {
	case ErrTooManyVLANs:
		return "gopacket has no VLAN depth limit"
	case ErrBadIPv4Version, ErrBadIPv6Version:
		return "gopacket does not check the IP version nibble"
	case ErrIPv4TotalLenTooShort:
		if binary.BigEndian.Uint16(frame[p.L3Off+2:]) == 0 {
			return "gopacket accepts IPv4 total length 0 (TSO)"
		}
	case ErrTooManyExtHeaders:
		return "gopacket has no extension-header limit"
	case ErrBadExtHeader:
		return "gopacket does not enforce RFC 8200 ordering or uniqueness"
	case ErrTruncatedExtHeader, ErrTruncatedTCP, ErrTruncatedUDP, ErrTruncatedICMP:
		if l := gp.Layer(layers.LayerTypeIPv6); l != nil && l.(*layers.IPv6).Length == 0 {
			return "gopacket treats IPv6 payload length 0 as a jumbogram"
		}
		if l := gp.Layer(layers.LayerTypeICMPv6); e == ErrTruncatedICMP && l != nil {
			return "gopacket needs 4 bytes of ICMPv6, we need 8"
		}
	case ErrBadTCPOption:
		return "gopacket stops silently at malformed TCP options and does not check known-kind lengths"
	case ErrBadUDPLen:
		if l := gp.Layer(layers.LayerTypeUDP); l != nil && l.(*layers.UDP).Length == 0 {
			return "gopacket treats UDP length 0 as a jumbogram"
		}
	}
	return ""
}

func compareTCP(t *testing.T, p *Packet, l *layers.TCP) {
	t.Helper()
	var flags uint8
	for i, b := range []bool{l.FIN, l.SYN, l.RST, l.PSH, l.ACK, l.URG, l.ECE, l.CWR} {
		if b {
			flags |= 1 << i
		}
	}
	eq(t, "SrcPort", p.SrcPort, uint16(l.SrcPort))
	eq(t, "DstPort", p.DstPort, uint16(l.DstPort))
	eq(t, "Seq", p.TCP.Seq, l.Seq)
	eq(t, "Ack", p.TCP.Ack, l.Ack)
	eq(t, "Flags", p.TCP.Flags, flags)
	eq(t, "NS", p.TCP.NS, l.NS)
	eq(t, "Window", p.TCP.Window, l.Window)
	eq(t, "Checksum", p.TCP.Checksum, l.Checksum)
	eq(t, "Urgent", p.TCP.Urgent, l.Urgent)
	eq(t, "DataOff", p.TCP.DataOff, int(l.DataOffset)*4)
	eq(t, "PayloadLen", p.PayloadLen, len(l.Payload))

	n := len(l.Options)
	if n == 0 || l.Options[n-1].OptionType != layers.TCPOptionKindEndList {
		if len(l.Padding) > 0 {
			// gopacket dropped the rest of the options (it is stricter
			// about MPTCP lengths than the generic TLV rule we apply).
			t.Logf("gopacket stopped the TCP option walk early; options not compared")
			return
		}
	}
	var want TCPOptions
	for _, o := range l.Options {
		d := o.OptionData
		switch o.OptionType {
		case layers.TCPOptionKindMSS:
			want.MSS, want.Has = binary.BigEndian.Uint16(d), want.Has|HasMSS
		case layers.TCPOptionKindWindowScale:
			want.WScale, want.Has = d[0], want.Has|HasWScale
		case layers.TCPOptionKindSACKPermitted:
			want.SACKPerm, want.Has = true, want.Has|HasSACKPerm
		case layers.TCPOptionKindSACK:
			want.Has |= HasSACK
		case layers.TCPOptionKindTimestamps:
			want.TSVal, want.TSEcr = binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:])
			want.Has |= HasTimestamps
		}
	}
	eq(t, "TCP options", p.TCP.Opts, want)
}

func addr(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: ours %v, gopacket %v", what, got, want)
	}
}
