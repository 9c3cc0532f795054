package packet

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// quote serializes an invoking packet with gopacket (the oracle): ip over
// a TCP segment from port 40000 to 443 with seq 0x01020304.
func quote(t testing.TB, ip gopacket.SerializableLayer, extra ...gopacket.SerializableLayer) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 0x01020304, Ack: 5, ACK: true, Window: 100}
	switch l := ip.(type) {
	case *layers.IPv4:
		tcp.SetNetworkLayerForChecksum(l)
	case *layers.IPv6:
		tcp.SetNetworkLayerForChecksum(l)
	}
	ls := append([]gopacket.SerializableLayer{ip}, extra...)
	ls = append(ls, tcp, gopacket.Payload("data"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func quotedV4(t testing.TB) []byte {
	return quote(t, &layers.IPv4{Version: 4, TTL: 1, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: net.IP{198, 18, 0, 2}, DstIP: net.IP{198, 19, 113, 7},
		Options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}})
}

func quotedV6(t testing.TB) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 1, NextHeader: layers.IPProtocolIPv6HopByHop,
		SrcIP: net.ParseIP("2001:2::2"), DstIP: net.ParseIP("2001:2:db8::7")}
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolTCP
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
	return quote(t, ip, hbh, dst)
}

func TestQuoted(t *testing.T) {
	v4, v6 := quotedV4(t), quotedV6(t)
	v4Later := bytes.Clone(v4)
	v4Later[6], v4Later[7] = 0, 1 // fragment offset 1
	for _, tc := range []struct {
		name     string
		b        []byte
		ver      uint8
		ok       bool
		ihl, l4  int // IP header length, quoted L4 bytes (-1: no L4)
		src, dst string
	}{
		{"ipv4 with options, whole segment", v4, 4, true, 24, 24, "198.18.0.2", "198.19.113.7"},
		{"ipv4, RFC 792's 8 bytes", v4[:24+8], 4, true, 24, 8, "198.18.0.2", "198.19.113.7"},
		{"ipv4, ports only", v4[:24+4], 4, true, 24, 4, "198.18.0.2", "198.19.113.7"},
		{"ipv4, no ports", v4[:24+3], 4, false, 0, 0, "", ""},
		{"ipv4 later fragment", v4Later, 4, true, 24, -1, "198.18.0.2", "198.19.113.7"},
		{"ipv4 truncated header", v4[:23], 4, false, 0, 0, "", ""},
		{"ipv4 quote in an ICMPv6 error", v4, 6, false, 0, 0, "", ""},
		{"ipv6 with extension headers", v6, 6, true, 56, 24, "2001:2::2", "2001:2:db8::7"},
		{"ipv6, 8 bytes", v6[:56+8], 6, true, 56, 8, "2001:2::2", "2001:2:db8::7"},
		{"ipv6, extension header cut", v6[:50], 6, false, 0, 0, "", ""},
		{"ipv6 quote in an ICMP error", v6, 4, false, 0, 0, "", ""},
		{"empty", nil, 4, false, 0, 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.b)
			var q Quoted
			ok := q.Parse(tc.b, tc.ver)
			if !bytes.Equal(orig, tc.b) {
				t.Fatal("Parse wrote to the quote")
			}
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tc.ok, q)
			}
			if !ok {
				return
			}
			if q.IPVersion != tc.ver || q.Src.String() != tc.src || q.Dst.String() != tc.dst || q.Proto != ProtoTCP || q.IPHeaderLen != tc.ihl {
				t.Fatalf("%+v", q)
			}
			if tc.l4 < 0 {
				if q.L4Off != -1 || q.SrcPort != 0 {
					t.Fatalf("later fragment with L4: %+v", q)
				}
				return
			}
			if q.L4Off != tc.ihl || q.L4Len != tc.l4 || q.SrcPort != 40000 || q.DstPort != 443 {
				t.Fatalf("%+v", q)
			}
		})
	}
}

func TestIsICMPError(t *testing.T) {
	for _, tc := range []struct {
		ver, proto, typ uint8
		want            bool
	}{
		{4, ProtoICMP, ICMPDestUnreachable, true}, {4, ProtoICMP, ICMPTimeExceeded, true}, {4, ProtoICMP, ICMPParamProblem, true},
		{4, ProtoICMP, 8, false}, {4, ProtoICMP, 0, false}, {4, ProtoICMPv6, ICMPDestUnreachable, false},
		{6, ProtoICMPv6, ICMPv6DestUnreachable, true}, {6, ProtoICMPv6, ICMPv6PacketTooBig, true},
		{6, ProtoICMPv6, ICMPv6ParamProblem, true}, {6, ProtoICMPv6, 128, false}, {6, ProtoICMPv6, 135, false},
		{6, ProtoICMP, ICMPDestUnreachable, false},
	} {
		p := Packet{IPVersion: tc.ver, Proto: tc.proto, ICMPType: tc.typ, L4Off: 34}
		if p.IsICMPError() != tc.want {
			t.Errorf("%+v: %v", tc, !tc.want)
		}
	}
	if p := (Packet{IPVersion: 4, Proto: ProtoICMP, ICMPType: 3, L4Off: -1}); p.IsICMPError() {
		t.Error("an ICMP error without its header (a fragment) is not one")
	}
}

// FuzzQuoted checks Quoted.Parse's contract on arbitrary quotes: no panic,
// no write, and on success offsets inside the quote and ports read from
// where L4Off says.
func FuzzQuoted(f *testing.F) {
	v4, v6 := quotedV4(f), quotedV6(f)
	for _, b := range [][]byte{v4, v4[:32], v6, v6[:64], v6[:48]} {
		f.Add(b, b[0]>>4 == 6)
	}
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		ver := uint8(4)
		if v6 {
			ver = 6
		}
		orig := bytes.Clone(b)
		var q Quoted
		ok := q.Parse(b, ver)
		if !bytes.Equal(orig, b) {
			t.Fatal("Parse wrote to the quote")
		}
		if !ok {
			return
		}
		if q.IPVersion != ver || q.IPHeaderLen > len(b) || q.IPHeaderLen < 20 || q.Src.Is4() != (ver == 4) {
			t.Fatalf("%+v for %d bytes", q, len(b))
		}
		if q.L4Off < 0 {
			if q.L4Off != -1 || q.L4Len != 0 || q.SrcPort != 0 || q.DstPort != 0 {
				t.Fatalf("no L4 but %+v", q)
			}
			return
		}
		if q.L4Off != q.IPHeaderLen || q.L4Off+q.L4Len != len(b) {
			t.Fatalf("L4 [%d,+%d) in %d bytes", q.L4Off, q.L4Len, len(b))
		}
		if (q.Proto == ProtoTCP || q.Proto == ProtoUDP) &&
			(q.L4Len < 4 || q.SrcPort != uint16(b[q.L4Off])<<8|uint16(b[q.L4Off+1]) || q.DstPort != uint16(b[q.L4Off+2])<<8|uint16(b[q.L4Off+3])) {
			t.Fatalf("ports %d %d at %d", q.SrcPort, q.DstPort, q.L4Off)
		}
	})
}
