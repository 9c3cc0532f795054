package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/packet"
)

// Size is what the UDP paths send: IPv4 packets of the given lengths, in
// turn (an IMIX is a sequence with its lengths in the mix's ratio).
type Size struct {
	Name   string
	IPLens []int
}

// The sizes the bench knows. 46-byte IP packets make 60-byte Ethernet
// frames, 64 on the wire with the FCS; 1500 is the lab's MTU (1514-byte
// frames). IMIX is the classic 7:4:1 of 64-byte frames, 576- and 1500-byte
// packets, spread over a cycle of 12.
var (
	Size64   = Size{Name: "64", IPLens: []int{46}}
	Size1500 = Size{Name: "1500", IPLens: []int{1500}}
	SizeIMIX = Size{Name: "imix", IPLens: []int{46, 576, 46, 46, 576, 46, 1500, 46, 576, 46, 46, 576}}
)

// ParseSize is the --size flag: 64, 1500 or imix.
func ParseSize(s string) (Size, error) {
	for _, z := range []Size{Size64, Size1500, SizeIMIX} {
		if strings.EqualFold(s, z.Name) {
			return z, nil
		}
	}
	return Size{}, fmt.Errorf("unknown frame size %q (want 64, 1500 or imix)", s)
}

func (z Size) orDefault() Size {
	if len(z.IPLens) == 0 {
		return Size64
	}
	return z
}

// FrameBytes is the mean Ethernet frame length without the FCS.
func (z Size) FrameBytes() float64 {
	z = z.orDefault()
	n := 0
	for _, l := range z.IPLens {
		n += max(60, 14+l)
	}
	return float64(n) / float64(len(z.IPLens))
}

func (z Size) String() string {
	switch z = z.orDefault(); z.Name {
	case "64":
		return "64-byte frames"
	case "1500":
		return "1500-byte IP packets (1514-byte frames)"
	case "imix":
		return "IMIX 7:4:1 of 64-byte frames, 576- and 1500-byte IP packets (mean frame " + fmt.Sprintf("%.0f", z.FrameBytes()) + " bytes)"
	}
	return z.Name
}

// frames builds one UDP frame per entry of the cycle.
func (z Size) frames(dst, src net.HardwareAddr, sip, dip netip.Addr) [][]byte {
	z = z.orDefault()
	out := make([][]byte, len(z.IPLens))
	for i, l := range z.IPLens {
		out[i] = UDPFrameIP(dst, src, sip, dip, l)
	}
	return out
}

// UDPFrameIP builds an Ethernet/IPv4/UDP frame carrying an ipLen-byte IP
// packet (at least 28) with valid checksums, to the discard port; padded
// to 60 bytes.
func UDPFrameIP(dst, src net.HardwareAddr, sip, dip netip.Addr, ipLen int) []byte {
	l4 := max(8, ipLen-20)
	f, udp, ph := ipv4Frame(dst, src, sip, dip, unix.IPPROTO_UDP, l4)
	binary.BigEndian.PutUint16(udp[0:], 9)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], uint16(l4))
	binary.BigEndian.PutUint16(udp[6:], packet.Checksum(udp, ph))
	return f
}
