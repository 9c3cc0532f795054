package protect

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

// Frames for these tests are built with gopacket, the oracle: the
// expected output is the error gopacket serializes around the quote as
// the endpoint sent it, every checksum computed from scratch.

var (
	router4 = netip.MustParseAddr("198.19.0.1")
	router6 = netip.MustParseAddr("2001:2:ffff::1")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) gopacket.NetworkLayer {
	if src.Is4() {
		return &layers.IPv4{Version: 4, TTL: 60, Id: 77, Flags: layers.IPv4DontFragment, Protocol: proto,
			SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	}
	return &layers.IPv6{Version: 6, HopLimit: 60, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

// quotedSeg is the invoking packet an error quotes: a TCP segment with
// 100 bytes of data, cut to n bytes (0: whole).
func quotedSeg(t testing.TB, src, dst netip.Addr, sport, dport uint16, seq, ack uint32, n int) []byte {
	ip := ipLayer(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, ACK: true, PSH: true, Window: 500}
	tcp.SetNetworkLayerForChecksum(ip)
	b := serialize(t, ip.(gopacket.SerializableLayer), tcp, gopacket.Payload(bytes.Repeat([]byte{'x'}, 100)))
	if n > 0 {
		b = b[:n]
	}
	return b
}

// icmpFrame is an ICMP error (type, code; the 4 bytes after the checksum
// hold mtu) from src to dst quoting quote, in an Ethernet frame with room
// to spare as a UMEM chunk has.
func icmpFrame(t testing.TB, fromServerSide bool, src, dst netip.Addr, typ, code uint8, mtu uint16, quote []byte) []byte {
	dm, sm := macS, macC
	if fromServerSide {
		dm, sm = macC, macS
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(sm[:]), DstMAC: net.HardwareAddr(dm[:])}
	var ls []gopacket.SerializableLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := ipLayer(src, dst, layers.IPProtocolICMPv4)
		ls = []gopacket.SerializableLayer{eth, ip.(gopacket.SerializableLayer),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: mtu}, gopacket.Payload(quote)}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := ipLayer(src, dst, layers.IPProtocolICMPv6)
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
		ic.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip.(gopacket.SerializableLayer), ic,
			gopacket.Payload(append([]byte{0, 0, byte(mtu >> 8), byte(mtu)}, quote...))}
	}
	b := serialize(t, ls...)
	return append(make([]byte, 0, len(b)+2048), b...)
}

// TestICMPErrorTranslation: errors quoting segments of a SYN-proxied
// connection reach their endpoint with the quote in its own sequence
// space, all checksums valid (byte for byte what gopacket builds): the
// server's PMTUD (frag needed, packet too big) and the client's
// unreachable. Errors about flows the proxy did not translate, or coming
// in by the wrong side, pass untouched.
func TestICMPErrorTranslation(t *testing.T) {
	for _, fam := range []struct {
		name             string
		cli, srv, router netip.Addr
		fragNeeded       uint8 // type of the PMTUD error
		unreachable      uint8
		ptbCode          uint8
	}{
		{"ipv4", cli4, srv4, router4, packet.ICMPDestUnreachable, packet.ICMPDestUnreachable, 4},
		{"ipv6", cli6, srv6, router6, packet.ICMPv6PacketTooBig, packet.ICMPv6DestUnreachable, 0},
	} {
		t.Run(fam.name, func(t *testing.T) {
			i, _ := newTestInspector(t, baseConfig(ModeMitigate))
			x, cookie := proxyHandshake(t, i, fam.cli, fam.srv)
			delta := x.sSeq - (cookie + 1)
			cAck := cookie + 1 // the client acks in the cookie's space
			for _, tc := range []struct {
				name       string
				from       engine.Side
				src, dst   netip.Addr
				typ, code  uint8
				sent, want []byte // quote as it left the gate, and as the endpoint sent it
				translated bool
			}{
				{"server's PMTUD, whole segment", engine.Outer, fam.router, fam.srv, fam.fragNeeded, fam.ptbCode,
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, 0),
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp, x.sSeq, x.cSeq, 0), true},
				{"server's PMTUD, RFC 792's 8 bytes", engine.Outer, fam.router, fam.srv, fam.fragNeeded, fam.ptbCode,
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, ipLen(fam.srv)+8),
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp, x.sSeq, x.cSeq, ipLen(fam.srv)+8), true},
				{"client's unreachable, whole segment", engine.Inner, fam.router, fam.cli, fam.unreachable, 1,
					quotedSeg(t, fam.cli, fam.srv, x.cp, x.sp, x.cSeq, cAck+delta, 0),
					quotedSeg(t, fam.cli, fam.srv, x.cp, x.sp, x.cSeq, cAck, 0), true},
				{"client's unreachable, ack not quoted", engine.Inner, fam.router, fam.cli, fam.unreachable, 1,
					quotedSeg(t, fam.cli, fam.srv, x.cp, x.sp, x.cSeq, cAck+delta, ipLen(fam.srv)+8),
					quotedSeg(t, fam.cli, fam.srv, x.cp, x.sp, x.cSeq, cAck+delta, ipLen(fam.srv)+8), false},
				{"server's segment quoted from the inside", engine.Inner, fam.router, fam.srv, fam.unreachable, 1,
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, 0),
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, 0), false},
				{"unknown flow", engine.Outer, fam.router, fam.srv, fam.fragNeeded, fam.ptbCode,
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp+1, 5, 6, 0),
					quotedSeg(t, fam.srv, fam.cli, x.sp, x.cp+1, 5, 6, 0), false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					server := tc.from == engine.Inner
					in := icmpFrame(t, server, tc.src, tc.dst, tc.typ, tc.code, 1280, tc.sent)
					want := icmpFrame(t, server, tc.src, tc.dst, tc.typ, tc.code, 1280, tc.want)
					before := i.Stats().Proxy["icmp_translated"]
					pk := run(i, tc.from, in)
					if pk.Verdict != engine.Forward {
						t.Fatalf("verdict %v", pk.Verdict)
					}
					if got := pk.Data[:pk.Len]; !bytes.Equal(got, want) {
						t.Fatalf("got\n%x\nwant\n%x", got, want)
					}
					if n := i.Stats().Proxy["icmp_translated"] - before; n != map[bool]uint64{true: 1}[tc.translated] {
						t.Fatalf("icmp_translated +%d", n)
					}
				})
			}
		})
	}
}

func ipLen(a netip.Addr) int {
	if a.Is4() {
		return 20
	}
	return 40
}

// TestICMPErrorUnproxied: a tracked flow the proxy did not set up has no
// offset: its errors pass byte for byte.
func TestICMPErrorUnproxied(t *testing.T) {
	i, _ := newTestInspector(t, noSynFlood(baseConfig(ModeMitigate)))
	x := &conn{t: t, i: i, c: cli4, s: srv4, cp: 40000, sp: 80, cSeq: 1000, sSeq: 9000}
	x.open()
	in := icmpFrame(t, false, router4, srv4, 3, 4, 1400, quotedSeg(t, srv4, cli4, 80, 40000, x.sSeq, x.cSeq, 0))
	want := bytes.Clone(in)
	if pk := run(i, engine.Outer, in); pk.Verdict != engine.Forward || !bytes.Equal(pk.Data[:pk.Len], want) {
		t.Fatalf("%v, changed: %v", pk.Verdict, !bytes.Equal(pk.Data[:pk.Len], want))
	}
}
