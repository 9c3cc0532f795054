package bench

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xskgate/xskgate/internal/packet"
)

// TestFrames checks the generator's frames with the project's parser: sizes,
// addresses, ports and checksums.
func TestFrames(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	var p packet.Packet
	for _, tc := range []struct {
		name  string
		frame []byte
		proto uint8
	}{
		{"udp", UDPFrame(mac, mac, a, b), packet.ProtoUDP},
		{"tcp ack", TCPAckFrame(mac, mac, a, b), packet.ProtoTCP},
	} {
		if err := p.Parse(tc.frame); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(tc.frame) != 60 || p.Src != a || p.Dst != b || p.Proto != tc.proto {
			t.Fatalf("%s: %d bytes, %v -> %v proto %d", tc.name, len(tc.frame), p.Src, p.Dst, p.Proto)
		}
		if packet.IPv4HeaderChecksum(tc.frame[14:34]) != uint16(tc.frame[24])<<8|uint16(tc.frame[25]) {
			t.Fatalf("%s: bad IPv4 header checksum", tc.name)
		}
		if tc.proto == packet.ProtoTCP && (!packet.VerifyTCPChecksum(&p, tc.frame) || p.TCP.Flags != packet.ACK) {
			t.Fatalf("%s: bad TCP checksum or flags %#x", tc.name, p.TCP.Flags)
		}
	}
}
