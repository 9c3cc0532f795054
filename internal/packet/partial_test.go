package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// l4check returns the offset of the transport checksum in frame.
func l4check(t testing.TB, f []byte) (*Packet, int) {
	t.Helper()
	var p Packet
	if err := p.Parse(f); err != nil {
		t.Fatal(err)
	}
	if p.Proto == ProtoTCP {
		return &p, p.L4Off + 16
	}
	return &p, p.L4Off + 6
}

// partialOf rewrites f's checksum field as a sending stack with checksum
// offload leaves it: the folded pseudo-header sum.
func partialOf(t testing.TB, f []byte) []byte {
	t.Helper()
	g := append([]byte(nil), f...)
	p, off := l4check(t, g)
	ph := pseudoHeaderSum(p, p.Proto, p.L3Off+p.IPTotalLen-p.L4Off)
	binary.BigEndian.PutUint16(g[off:], fold(ph))
	return g
}

// gopacketValid checks f's transport checksum with gopacket as the oracle:
// it recomputes the checksum of the decoded layers.
func gopacketValid(t testing.TB, f []byte) bool {
	t.Helper()
	pk := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	var nl gopacket.NetworkLayer
	if ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		nl = ip
	} else {
		nl = pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true}
	if tcp, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		got := tcp.Checksum
		tcp.SetNetworkLayerForChecksum(nl)
		if err := gopacket.SerializeLayers(buf, opts, tcp, gopacket.Payload(tcp.Payload)); err != nil {
			t.Fatal(err)
		}
		return tcp.Checksum == got
	}
	u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	got := u.Checksum
	u.SetNetworkLayerForChecksum(nl)
	if err := gopacket.SerializeLayers(buf, opts, u, gopacket.Payload(u.Payload)); err != nil {
		t.Fatal(err)
	}
	return u.Checksum == got
}

func TestCompletePartial(t *testing.T) {
	frames := []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"ipv4 tcp syn", frameIPv4TCPSYN},
		{"ipv6 tcp ack", frameIPv6TCPACK},
		{"ipv4 udp", frameIPv4UDP},
		{"ipv6 udp", frameIPv6UDP},
		{"ipv4 tcp with ip options", frameIPv4Options},
		{"qinq ipv6", frameQinQ},
		{"padded frame", framePadded},
	}
	for _, tt := range frames {
		t.Run(tt.name, func(t *testing.T) {
			good := tt.frame(t)
			if !gopacketValid(t, good) {
				t.Fatal("test frame has a bad checksum to begin with")
			}
			f := partialOf(t, good)
			p, _ := l4check(t, f)
			if !CompletePartial(p, f) {
				t.Fatal("partial checksum not recognised")
			}
			if !bytes.Equal(f, good) || !gopacketValid(t, f) {
				t.Fatal("completed checksum differs from the real one")
			}
			// A complete checksum is left alone.
			p, _ = l4check(t, f)
			if CompletePartial(p, f) || !bytes.Equal(f, good) {
				t.Fatal("a complete checksum was rewritten")
			}
			// A wrong checksum stays wrong: the gate repairs nothing.
			bad := append([]byte(nil), good...)
			p, off := l4check(t, bad)
			bad[off] ^= 0x5a
			if CompletePartial(p, bad) || gopacketValid(t, bad) {
				t.Fatal("a corrupt checksum was repaired")
			}
		})
	}
}

func TestCompletePartialLeavesAlone(t *testing.T) {
	for _, tt := range []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"ipv4 first fragment", frameIPv4FirstFragTCP},
		{"ipv4 later fragment", frameIPv4LaterFrag},
		{"ipv6 first fragment", frameIPv6FirstFrag},
		{"icmp", frameICMPEcho},
		{"arp", frameARP},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.frame(t)
			orig := append([]byte(nil), f...)
			var p Packet
			_ = p.Parse(f)
			if CompletePartial(&p, f) || !bytes.Equal(f, orig) {
				t.Fatal("frame changed")
			}
		})
	}
	// UDP over IPv4 without a checksum (0) stays without one.
	f := frameIPv4UDP(t)
	p, off := l4check(t, f)
	binary.BigEndian.PutUint16(f[off:], 0)
	if CompletePartial(p, f) {
		t.Fatal("UDP checksum 0 (none) was completed")
	}
}

func TestCompletePartialNoAlloc(t *testing.T) {
	partial := partialOf(t, frameIPv4TCPSYN(t))
	f := append([]byte(nil), partial...)
	var p Packet
	if n := testing.AllocsPerRun(100, func() {
		copy(f, partial)
		_ = p.Parse(f)
		CompletePartial(&p, f)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// FuzzCompletePartial: on any frame, CompletePartial never panics; when it
// reports a completion the checksum verifies, and otherwise the frame is
// unchanged.
func FuzzCompletePartial(f *testing.F) {
	for _, fr := range []func(testing.TB) []byte{frameIPv4TCPSYN, frameIPv6TCPACK, frameIPv4UDP, frameIPv6UDP, frameIPv4Options} {
		good := fr(f)
		f.Add(good)
		f.Add(partialOf(f, good))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if p.Parse(b) != nil {
			return
		}
		orig := append([]byte(nil), b...)
		if !CompletePartial(&p, b) {
			if !bytes.Equal(b, orig) {
				t.Fatal("frame changed without a completion")
			}
			return
		}
		seg := b[p.L4Off : p.L3Off+p.IPTotalLen]
		if fold(sum(seg, pseudoHeaderSum(&p, p.Proto, len(seg)))) != 0xffff {
			t.Fatal("completed checksum does not verify")
		}
	})
}

func BenchmarkCompletePartial(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(map[int]string{64: "64B", 1500: "1500B"}[size], func(b *testing.B) {
			ip := ip4(layers.IPProtocolTCP)
			payload := make([]byte, size-54)
			good := serialize(b, eth(layers.EthernetTypeIPv4), ip, tcpACK(ip), gopacket.Payload(payload))
			partial := partialOf(b, good)
			f := append([]byte(nil), partial...)
			var p Packet
			b.SetBytes(int64(len(f)))
			b.ReportAllocs()
			for b.Loop() {
				copy(f, partial)
				_ = p.Parse(f)
				CompletePartial(&p, f)
			}
		})
	}
}
