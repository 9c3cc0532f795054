package packet

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frame builders used by the table tests, the benchmarks and the seed
// corpus. They go through gopacket's serializer so that lengths and
// checksums come from an independent implementation.

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	v4A  = net.IPv4(198, 19, 2, 1).To4()
	v4B  = net.IPv4(198, 19, 100, 7).To4()
	v6A  = net.ParseIP("2001:2:db8::1")
	v6B  = net.ParseIP("2001:2:ffff::2")
)

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: v4A, DstIP: v4B}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 57, NextHeader: next, SrcIP: v6A, DstIP: v6B, FlowLabel: 0xbeef}
}

// allTCPOptions exercises every option kind the parser decodes, plus NOP
// padding and an unknown kind.
func allTCPOptions() []layers.TCPOption {
	ts := make([]byte, 8)
	binary.BigEndian.PutUint32(ts[0:], 0xdeadbeef)
	binary.BigEndian.PutUint32(ts[4:], 0x01020304)
	sack := make([]byte, 8)
	for i := range sack {
		sack[i] = byte(i + 1)
	}
	return []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		{OptionType: layers.TCPOptionKindSACK, OptionLength: 10, OptionData: sack},
		{OptionType: 254, OptionLength: 4, OptionData: []byte{0xf9, 0x89}}, // RFC 6994 experimental
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindEndList},
	}
}

func tcpSYN(net gopacket.NetworkLayer) *layers.TCP {
	t := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 0x11223344, SYN: true, ECE: true, CWR: true,
		Window: 64240, Options: allTCPOptions()}
	if err := t.SetNetworkLayerForChecksum(net); err != nil {
		panic(err)
	}
	return t
}

func tcpACK(net gopacket.NetworkLayer) *layers.TCP {
	ts := make([]byte, 8)
	binary.BigEndian.PutUint32(ts[0:], 100)
	binary.BigEndian.PutUint32(ts[4:], 200)
	t := &layers.TCP{SrcPort: 51515, DstPort: 80, Seq: 0xfffffff0, Ack: 0x0badcafe, ACK: true, PSH: true,
		Window: 502, Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
		}}
	if err := t.SetNetworkLayerForChecksum(net); err != nil {
		panic(err)
	}
	return t
}

func udp(net gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: 40001, DstPort: 9999}
	if err := u.SetNetworkLayerForChecksum(net); err != nil {
		panic(err)
	}
	return u
}

func frameIPv4TCPSYN(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolTCP)
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip, tcpSYN(ip))
}

func frameIPv6TCPACK(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolTCP)
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, tcpACK(ip), gopacket.Payload("GET / HTTP/1.1\r\n\r\n"))
}

func frameIPv4UDP(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolUDP)
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip, udp(ip), gopacket.Payload("0123456789abcdef0123"))
}

func frameIPv6UDP(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolUDP)
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, udp(ip), gopacket.Payload("xyz"))
}

func frameVLAN(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolUDP)
	return serialize(tb, eth(layers.EthernetTypeDot1Q),
		&layers.Dot1Q{Priority: 5, VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
		ip, udp(ip), gopacket.Payload("vlan"))
}

func frameQinQ(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolTCP)
	return serialize(tb, eth(layers.EthernetTypeQinQ),
		&layers.Dot1Q{VLANIdentifier: 3000, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv6},
		ip, tcpACK(ip))
}

func frameICMPEcho(tb testing.TB) []byte {
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload("ping"))
}

func frameICMPv6Echo(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, ic, &layers.ICMPv6Echo{Identifier: 9, SeqNumber: 2},
		gopacket.Payload("ping6"))
}

func frameICMPv6ND(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolICMPv6)
	ip.HopLimit = 255
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, ic, &layers.ICMPv6NeighborSolicitation{
		TargetAddress: v6B,
		Options:       layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: macA}},
	})
}

func frameARP(tb testing.TB) []byte {
	return serialize(tb, eth(layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: v4A,
		DstHwAddress: make([]byte, 6), DstProtAddress: v4B,
	})
}

func frameIPv4Options(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolTCP)
	// Router alert (RFC 2113) padded to a word by gopacket: IHL 6.
	ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip, tcpACK(ip), gopacket.Payload("data"))
}

// frameIPv4FirstFragTCP is the first fragment (MF set, offset 0) of a TCP
// segment: the parser must still decode the TCP header it carries.
func frameIPv4FirstFragTCP(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolTCP)
	ip.Flags = layers.IPv4MoreFragments
	ip.Id = 0xabcd
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip, tcpACK(ip), gopacket.Payload("first-frag"))
}

func frameIPv4LaterFrag(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolTCP)
	ip.Flags = 0
	ip.FragOffset = 185
	ip.Id = 0xabcd
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload("this is the tail of the segment"))
}

func frameIPv6ExtChain(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolIPv6HopByHop)
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 5, OptionLength: 2, OptionData: []byte{0, 0}}, {OptionType: 1, OptionLength: 2}}
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolIPv6Fragment
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 14, OptionData: make([]byte, 12)}}
	frag := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, Identification: 0x55667788}
	u := udp(ip)
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, hbh, dst, frag, u, gopacket.Payload("atomic"))
}

func frameIPv6FirstFrag(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolIPv6Fragment)
	frag := &layers.IPv6Fragment{NextHeader: layers.IPProtocolTCP, MoreFragments: true, Identification: 77}
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, frag, tcpACK(ip), gopacket.Payload("frag0"))
}

func frameIPv6LaterFrag(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolIPv6Fragment)
	frag := &layers.IPv6Fragment{NextHeader: layers.IPProtocolTCP, FragmentOffset: 100, Identification: 77}
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, frag, gopacket.Payload("later fragment data"))
}

// framePadded is a minimum-size (60-byte) Ethernet frame carrying a 40-byte
// IPv4/TCP packet: gopacket's Ethernet serializer adds the 6 padding bytes.
func framePadded(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolTCP)
	t := &layers.TCP{SrcPort: 1, DstPort: 2, Seq: 3, RST: true}
	if err := t.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	b := serialize(tb, eth(layers.EthernetTypeIPv4), ip, t)
	// Make the padding non-zero so that anything summing it would notice.
	for i := 54; i < len(b); i++ {
		b[i] = 0xa5
	}
	return b
}
