package bench

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/xskgate/xskgate/internal/packet"
)

func TestSizes(t *testing.T) {
	dst, src := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	sip, dip := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	if got := UDPFrameIP(dst, src, sip, dip, 46); string(got) != string(UDPFrame(dst, src, sip, dip)) {
		t.Fatal("UDPFrameIP(46) is not the 64-byte UDPFrame")
	}
	z, err := ParseSize("IMIX")
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	for _, f := range z.frames(dst, src, sip, dip) {
		ipLen := int(binary.BigEndian.Uint16(f[16:]))
		count[ipLen]++
		if len(f) != max(60, 14+ipLen) {
			t.Errorf("frame of %d bytes carries a %d-byte IP packet", len(f), ipLen)
		}
		if packet.Checksum(f[14:34], 0) != 0 {
			t.Errorf("%d-byte packet: bad IPv4 header checksum", ipLen)
		}
	}
	if count[46] != 7 || count[576] != 4 || count[1500] != 1 {
		t.Errorf("IMIX cycle %v, want 7:4:1 of 46/576/1500-byte IP packets", count)
	}
	if got := SizeIMIX.FrameBytes(); got < 357 || got > 358 {
		t.Errorf("IMIX mean frame %.1f bytes, want (7*60+4*590+1514)/12", got)
	}
	if _, err := ParseSize("9000"); err == nil {
		t.Error("ParseSize(9000) accepted")
	}
}
